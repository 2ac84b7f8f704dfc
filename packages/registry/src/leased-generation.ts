import type { GenerateResult, Generation, TokenChunk } from '@llm-node/abi-native';
import { toNodeError } from './errors.js';

/** A generation whose failures are NodeErrors: what the server receives from a model lease. */
export class LeasedGeneration implements Generation {
  readonly result: Promise<GenerateResult>;
  readonly #inner: Generation;

  constructor(inner: Generation) {
    this.#inner = inner;
    this.result = inner.result.catch((error: unknown) => {
      throw toNodeError(error);
    });
    this.result.catch(() => {}); // as the inner one: the iterator throws it; an unawaited result must not crash
  }

  next(): Promise<IteratorResult<TokenChunk, undefined>> {
    return this.#inner.next().catch((error: unknown) => {
      throw toNodeError(error);
    });
  }

  return(): Promise<IteratorResult<TokenChunk, undefined>> {
    return this.#inner.return!();
  }

  [Symbol.asyncIterator](): this {
    return this;
  }
}
