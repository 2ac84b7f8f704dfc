import { setImmediate } from 'node:timers';

/**
 * Spreads the token writes of all streams over event-loop turns, at most `perTurn` writes in one turn.
 * Each write is a socket syscall (and, on loopback, the delivery it sets off); with dozens of streams one
 * turn could otherwise hold a write for every one of them, and /health and new requests wait behind it.
 * The total work is the same: bursts are only cut into turns short enough for others to get in between.
 */
export class WriteTurns {
  readonly #perTurn: number;
  #used = 0;
  #waiting: (() => void)[] = [];
  #turnEndScheduled = false;

  constructor(perTurn: number) {
    this.#perTurn = perTurn;
  }

  /** Undefined when the caller may write now; else a promise of a later turn's place. */
  reserve(): Promise<void> | undefined {
    this.#scheduleTurnEnd();
    if (this.#used < this.#perTurn && this.#waiting.length === 0) {
      this.#used++;
      return undefined;
    }
    return new Promise((resolve) => this.#waiting.push(resolve));
  }

  // setImmediate runs once the turn's I/O is done: a new turn begins with the writers that waited longest.
  #scheduleTurnEnd(): void {
    if (this.#turnEndScheduled) return;
    this.#turnEndScheduled = true;
    setImmediate(() => {
      this.#turnEndScheduled = false;
      const admitted = this.#waiting.splice(0, this.#perTurn);
      this.#used = admitted.length;
      for (const resolve of admitted) resolve();
      if (this.#waiting.length > 0 || this.#used > 0) this.#scheduleTurnEnd();
    });
  }
}
