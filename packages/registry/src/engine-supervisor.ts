import type { Engine, EngineExit } from '@llm-node/abi-native';
import { NodeError } from './errors.js';

/** How an engine that keeps dying is treated. */
export interface RestartPolicy {
  /** Crashes within `windowMs` after which the engine is marked failed and not restarted. Default 5. */
  maxCrashes?: number;
  /** Default 5 minutes. */
  windowMs?: number;
  /** The first restart's delay; each further crash in the window doubles it, up to 10 s. Default 100 ms. */
  firstDelayMs?: number;
}

const DEFAULT_POLICY: Required<RestartPolicy> = { maxCrashes: 5, windowMs: 5 * 60_000, firstDelayMs: 100 };
const MAX_DELAY_MS = 10_000;

export type SupervisedStatus = 'loaded' | 'restarting' | 'failed';

export interface SupervisorHooks {
  /** `engine` died: whatever it held is gone. Called before any restart. */
  onLost(exit: EngineExit, engine: Engine): void;
  /** A restart is scheduled, or the engine is given up (`failed`). */
  onRestart(outcome: { status: 'restarting'; delayMs: number } | { status: 'loaded' } | { status: 'failed'; error: NodeError }): void;
}

/**
 * One loaded plugin's engine over its life: when its host process dies it is started again (open and
 * engine_init, as discovery did) after a backoff, and given up as `failed` once it has died maxCrashes times
 * within windowMs. Models are not reloaded here: the registry loads them again on their next request.
 */
export class EngineSupervisor {
  readonly #start: () => Promise<Engine>;
  readonly #hooks: SupervisorHooks;
  readonly #policy: Required<RestartPolicy>;
  #engine: Engine | null;
  #restarting: Promise<Engine> | null = null;
  #failure: NodeError | null = null;
  #crashes: number[] = [];
  #closing = false;

  /** `engine` is the one discovery opened; `start` opens and initialises another. */
  constructor(engine: Engine, start: () => Promise<Engine>, hooks: SupervisorHooks, policy: RestartPolicy = {}) {
    this.#engine = engine;
    this.#start = start;
    this.#hooks = hooks;
    this.#policy = { ...DEFAULT_POLICY, ...policy };
    this.#watch(engine);
  }

  get status(): SupervisedStatus {
    if (this.#failure) return 'failed';
    return this.#engine ? 'loaded' : 'restarting';
  }

  /** Why the engine was given up; null unless failed. */
  get failure(): NodeError | null {
    return this.#failure;
  }

  /** The running engine; waits for a restart in progress. Throws `engine_failed` once the engine is given up. */
  async engine(): Promise<Engine> {
    for (;;) {
      if (this.#engine) return this.#engine;
      if (this.#failure) throw this.#failure;
      if (this.#closing || !this.#restarting) throw shuttingDown();
      await this.#restarting.catch(() => undefined); // a failed restart schedules the next one, or fails the engine
    }
  }

  /** The running engine, or null while it restarts or after it failed. */
  get current(): Engine | null {
    return this.#engine;
  }

  /** Closes the running engine (or the one a restart is opening); no restart follows. */
  async close(): Promise<void> {
    this.#closing = true;
    const engine = this.#engine ?? (await this.#restarting?.catch(() => null));
    await engine?.close();
  }

  #watch(engine: Engine): void {
    void engine.exited.then((exit) => {
      if (exit.code === 'closed' || this.#closing || this.#engine !== engine) return;
      this.#engine = null;
      this.#hooks.onLost(exit, engine);
      this.#afterCrash(exit.message);
    });
  }

  #afterCrash(why: string): void {
    const now = Date.now();
    this.#crashes = [...this.#crashes.filter((at) => now - at < this.#policy.windowMs), now];
    const count = this.#crashes.length;
    if (count >= this.#policy.maxCrashes) {
      this.#failure = new NodeError(
        `The engine failed ${count} times within ${Math.round(this.#policy.windowMs / 1000)} s and is not restarted; the last time: ${why}`,
        { type: 'engine_error', code: 'engine_failed', status: 503 },
      );
      this.#hooks.onRestart({ status: 'failed', error: this.#failure });
      return;
    }
    const delayMs = Math.min(MAX_DELAY_MS, this.#policy.firstDelayMs * 2 ** (count - 1));
    this.#hooks.onRestart({ status: 'restarting', delayMs });
    this.#restarting = (async () => {
      await new Promise((resolve) => setTimeout(resolve, delayMs));
      if (this.#closing) throw shuttingDown();
      return this.#start();
    })();
    this.#restarting.then(
      (engine) => {
        this.#restarting = null;
        this.#engine = engine;
        this.#watch(engine);
        this.#hooks.onRestart({ status: 'loaded' });
      },
      (error: unknown) => {
        this.#restarting = null;
        if (!this.#closing) this.#afterCrash(`it did not start again: ${(error as Error).message}`);
      },
    );
  }
}

function shuttingDown(): NodeError {
  return new NodeError('The node is shutting down', { type: 'server_error', code: 'shutting_down', status: 503 });
}
