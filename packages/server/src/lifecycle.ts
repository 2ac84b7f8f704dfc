import type { RequestHandler, Response } from 'express';
import type { NodeError } from '@llm-node/registry';
import { apiError } from './errors.js';

/**
 * Requests in flight and the server's way out. Every generation gets a signal that aborts when its client goes
 * away or the server shuts down. `drain()` refuses new requests (503 `shutting_down`, with `Connection: close`
 * so that clients and load balancers open their next connection elsewhere) and lets those in flight go on;
 * `shutdown()` also aborts the generations' signals with the `shutting_down` error. `idle()` resolves when the
 * last request in flight has ended.
 */
export class Lifecycle {
  #draining = false;
  #inFlight = 0;
  readonly #idleWaiters: (() => void)[] = [];
  readonly #generations = new Set<AbortController>();
  readonly #shutdownReason: NodeError = apiError('shutting_down', 'The server is shutting down');

  /** True from drain() or shutdown() on. */
  get draining(): boolean {
    return this.#draining;
  }

  /** Requests whose responses have not closed. */
  get inFlight(): number {
    return this.#inFlight;
  }

  /** Counts each request until its response closes; refuses requests once draining has begun. */
  readonly track: RequestHandler = (_req, res, next) => {
    if (this.#draining) {
      res.setHeader('Connection', 'close');
      next(this.#shutdownReason);
      return;
    }
    this.#inFlight += 1;
    res.once('close', () => {
      this.#inFlight -= 1;
      if (this.#inFlight === 0) for (const resolve of this.#idleWaiters.splice(0)) resolve();
    });
    next();
  };

  /** A signal for one generation: aborted when the client disconnects before the response ends, or on shutdown. */
  generationSignal(res: Response): AbortSignal {
    const controller = new AbortController();
    this.#generations.add(controller);
    res.once('close', () => {
      this.#generations.delete(controller);
      if (!res.writableFinished) controller.abort();
    });
    return controller.signal;
  }

  /** The error a generation aborted by shutdown reports, or null when its client went away. */
  abortError(signal: AbortSignal): NodeError | null {
    return signal.reason === this.#shutdownReason ? this.#shutdownReason : null;
  }

  drain(): void {
    this.#draining = true;
  }

  idle(): Promise<void> {
    if (this.#inFlight === 0) return Promise.resolve();
    return new Promise((resolve) => this.#idleWaiters.push(resolve));
  }

  shutdown(): Promise<void> {
    this.#draining = true;
    for (const controller of this.#generations) controller.abort(this.#shutdownReason);
    return this.idle();
  }
}
