import type { FinishReason, GenerateResult, Generation, TokenChunk } from './types.js';

interface Waiter {
  resolve(result: IteratorResult<TokenChunk, undefined>): void;
  reject(error: unknown): void;
}

/** How a generation ended: its result, or the error it failed with. */
export type GenerationOutcome = { result: GenerateResult } | { error: unknown };

/**
 * A generation as its consumer sees it, fed by whoever runs it (a plugin on a thread of this process, or an
 * engine host process): push() each chunk as it arrives, end() once. While nobody is waiting for a chunk they
 * queue here, and next() hands out everything queued as one chunk, so a slow consumer gets fewer, bigger
 * chunks rather than a backlog of small ones.
 *
 * Cancelling (abort, leaving the loop early, close) ends the iteration at once and drops what was not taken;
 * `result` then settles when the producer has ended, with finishReason 'cancelled'. A failure is thrown by
 * the iterator once, after the chunks that came before it, and `result` rejects with the same error (marked
 * handled, so nobody has to await it).
 */
export class TokenStream implements Generation {
  readonly result: Promise<GenerateResult>;
  /** Settles when the producer has ended and nothing of this generation is still running. Never rejects. */
  readonly ended: Promise<void>;
  /** The model it runs on, for unloadModel(), which must stop it first. */
  readonly modelId: string | undefined;

  readonly #onCancel: () => void;
  #queue: TokenChunk[] = [];
  #queued = 0;
  #waiters: Waiter[] = [];
  /** No more chunks will be handed out. */
  #over = false;
  #settled = false;
  #error: unknown;
  #settle!: (outcome: GenerationOutcome) => void;

  /** `onCancel` asks the producer to stop; it is called once, on the first cancel(). */
  constructor(modelId: string | undefined, onCancel: () => void = () => {}) {
    this.modelId = modelId;
    this.#onCancel = onCancel;
    let ended!: () => void;
    this.ended = new Promise((resolve) => (ended = resolve));
    this.result = new Promise((resolve, reject) => {
      this.#settle = (outcome) => {
        if ('error' in outcome) reject(outcome.error);
        else resolve(outcome.result);
        ended();
      };
    });
    this.result.catch(() => {}); // the error is the iterator's to throw; an unawaited result must not crash
  }

  /** A generation refused before it started: the iterator throws `error`, and `result` rejects with it. */
  static failed(error: unknown): TokenStream {
    const stream = new TokenStream(undefined);
    stream.end({ error });
    return stream;
  }

  /** A generation that was cancelled before it started. */
  static cancelled(modelId: string | undefined): TokenStream {
    const stream = new TokenStream(modelId);
    stream.#over = true;
    stream.end({ result: { finishReason: 'cancelled', promptTokens: 0, completionTokens: 0 } });
    return stream;
  }

  get buffered(): number {
    return this.#queued;
  }

  /** True once end() was called. */
  get isEnded(): boolean {
    return this.#settled;
  }

  /** Stops the generation before its next token. */
  cancel(): void {
    const first = !this.#over;
    this.#over = true;
    this.#queue.length = 0;
    this.#queued = 0;
    for (const waiter of this.#waiters.splice(0)) waiter.resolve({ value: undefined, done: true });
    if (first && !this.#settled) this.#onCancel();
  }

  next(): Promise<IteratorResult<TokenChunk, undefined>> {
    if (this.#queue.length > 0) {
      this.#queued = 0;
      return Promise.resolve({ value: merge(this.#queue.splice(0)), done: false });
    }
    if (this.#error !== undefined) {
      const error = this.#error;
      this.#error = undefined; // thrown once
      return Promise.reject(error);
    }
    if (this.#over) return Promise.resolve({ value: undefined, done: true });
    return new Promise((resolve, reject) => this.#waiters.push({ resolve, reject }));
  }

  /** Leaving a for-await loop early (break, return, a throw in its body) cancels the generation. */
  return(): Promise<IteratorResult<TokenChunk, undefined>> {
    this.cancel();
    return Promise.resolve({ value: undefined, done: true });
  }

  [Symbol.asyncIterator](): this {
    return this;
  }

  /** A chunk from the producer; dropped after a cancel. */
  push(chunk: TokenChunk): void {
    if (this.#over) return;
    const waiter = this.#waiters.shift();
    if (waiter !== undefined) {
      waiter.resolve({ value: chunk, done: false });
    } else {
      this.#queue.push(chunk);
      this.#queued += chunk.text.length;
    }
  }

  /** The producer has ended; later calls are ignored. */
  end(outcome: GenerationOutcome): void {
    if (this.#settled) return;
    this.#settled = true;
    if ('error' in outcome && !this.#over) this.#error = outcome.error;
    this.#over = true;
    if (this.#queue.length === 0) {
      for (const waiter of this.#waiters.splice(0)) {
        if (this.#error === undefined) {
          waiter.resolve({ value: undefined, done: true });
        } else {
          waiter.reject(this.#error);
          this.#error = undefined;
        }
      }
    }
    this.#settle(outcome);
  }
}

/** Queued chunks as one, in a single pass. */
function merge(chunks: TokenChunk[]): TokenChunk {
  if (chunks.length === 1) return chunks[0]!;
  let tokenCount = 0;
  for (const c of chunks) tokenCount += c.tokenCount;
  const pieceEnds = new Uint32Array(tokenCount);
  let text = '';
  let at = 0;
  for (const c of chunks) {
    for (let i = 0; i < c.pieceEnds.length; i++) pieceEnds[at + i] = text.length + c.pieceEnds[i]!;
    at += c.pieceEnds.length;
    text += c.text;
  }
  const tokens = chunks[0]!.tokens === undefined ? undefined : chunks.flatMap((c) => c.tokens!);
  return tokens === undefined ? { text, tokenCount, pieceEnds } : { text, tokenCount, pieceEnds, tokens };
}

/** engine_api.h EngineFinishReason, by value. */
export const FINISH_REASONS: readonly FinishReason[] = ['stop', 'length', 'cancelled'];
