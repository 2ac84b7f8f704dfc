import type { GenerateResult, Generation, TokenChunk } from '@llm-node/abi-native';
import type { NodeError } from './errors.js';

/** A generation whose failures are NodeErrors as a client may read them: what a model lease generates. */
export class LeasedGeneration implements Generation {
  readonly result: Promise<GenerateResult>;
  readonly #inner: Generation;
  readonly #toNodeError: (error: unknown) => NodeError;

  constructor(inner: Generation, toNodeError: (error: unknown) => NodeError) {
    this.#inner = inner;
    this.#toNodeError = toNodeError;
    this.result = inner.result.catch((error: unknown) => {
      throw toNodeError(error);
    });
    this.result.catch(() => {}); // as the inner one: the iterator throws it; an unawaited result must not crash
  }

  get buffered(): number {
    return this.#inner.buffered;
  }

  next(): Promise<IteratorResult<TokenChunk, undefined>> {
    return this.#inner.next().catch((error: unknown) => {
      throw this.#toNodeError(error);
    });
  }

  return(): Promise<IteratorResult<TokenChunk, undefined>> {
    return this.#inner.return!();
  }

  [Symbol.asyncIterator](): this {
    return this;
  }
}
