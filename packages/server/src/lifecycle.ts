import type { RequestHandler, Response } from 'express';
import type { NodeError } from '@llm-node/registry';
import { apiError } from './errors.js';

/**
 * Requests in flight and the server's shutdown. Every generation gets a signal that aborts when its client
 * goes away or the server shuts down; `shutdown()` refuses new requests, aborts those signals with the
 * `shutting_down` error as their reason, and resolves when the last request in flight has ended.
 */
export class Lifecycle {
  #shuttingDown = false;
  #inFlight = 0;
  #idle: (() => void) | null = null;
  readonly #generations = new Set<AbortController>();
  readonly #shutdownReason: NodeError = apiError('shutting_down', 'The server is shutting down');

  get shuttingDown(): boolean {
    return this.#shuttingDown;
  }

  /** Counts each request until its response closes; refuses requests once shutdown has begun. */
  readonly track: RequestHandler = (_req, res, next) => {
    if (this.#shuttingDown) {
      next(this.#shutdownReason);
      return;
    }
    this.#inFlight += 1;
    res.once('close', () => {
      this.#inFlight -= 1;
      if (this.#inFlight === 0) this.#idle?.();
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

  shutdown(): Promise<void> {
    this.#shuttingDown = true;
    for (const controller of this.#generations) controller.abort(this.#shutdownReason);
    if (this.#inFlight === 0) return Promise.resolve();
    return new Promise((resolve) => {
      this.#idle = resolve;
    });
  }
}
