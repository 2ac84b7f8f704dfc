import { binding } from './binding.js';
import type { NativeEnd, NativeGenerateRequest, NativeGeneration, NativePlugin, NativeTokenDetail } from './binding.js';
import { EngineError, toEngineError } from './errors.js';
import type { FinishReason, GenerateResult, Generation, TokenChunk } from './types.js';

/** engine_api.h EngineFinishReason, by value. */
const FINISH_REASONS: readonly FinishReason[] = ['stop', 'length', 'cancelled'];

interface Waiter {
  resolve(result: IteratorResult<TokenChunk, undefined>): void;
  reject(error: unknown): void;
}

/**
 * One generate() call. Chunks arrive from native/generation.cc; while nobody is waiting for one they
 * queue here, and next() hands out everything queued as one chunk, so a slow consumer gets fewer,
 * bigger chunks rather than a backlog of small ones.
 *
 * Cancelling (abort, leaving the loop early, close) ends the iteration at once and drops what was not
 * taken; `result` then settles when the plugin has returned, with finishReason 'cancelled'.
 * A failure is thrown by the iterator once, after the chunks that came before it, and `result` rejects
 * with the same error (marked handled, so nobody has to await it).
 */
export class PluginGeneration implements Generation {
  readonly result: Promise<GenerateResult>;
  /** Settles when the plugin has returned and nothing of this generation is still running. Never rejects. */
  readonly ended: Promise<void>;
  /** The model it runs on, for unloadModel(), which must stop it first. */
  readonly modelId: string | undefined;

  #native: NativeGeneration | undefined;
  #signal: AbortSignal | undefined;
  #queue: TokenChunk[] = [];
  #waiters: Waiter[] = [];
  /** No more chunks will be handed out. */
  #over = false;
  #error: unknown;
  #settle!: (outcome: { result: GenerateResult } | { error: unknown }) => void;

  /** Starts generating at once, on a thread of its own. */
  static start(plugin: NativePlugin, request: NativeGenerateRequest, modelId: string | undefined, signal?: AbortSignal): PluginGeneration {
    const generation = new PluginGeneration(modelId);
    if (signal?.aborted) {
      generation.#over = true;
      generation.#end({ result: { finishReason: 'cancelled', promptTokens: 0, completionTokens: 0 } });
      return generation;
    }
    try {
      generation.#native = new binding.Generation(plugin, request, (text, pieceEnds, tokens, end) =>
        end === undefined ? generation.#push(chunk(text!, pieceEnds!, tokens)) : generation.#finish(end),
      );
    } catch (error) {
      generation.#end({ error: toEngineError(error) });
      return generation;
    }
    generation.#signal = signal;
    signal?.addEventListener('abort', generation.#onAbort, { once: true });
    return generation;
  }

  /** A generation refused before it started: the iterator throws `error`, and `result` rejects with it. */
  static failed(error: EngineError): PluginGeneration {
    const generation = new PluginGeneration(undefined);
    generation.#end({ error });
    return generation;
  }

  private constructor(modelId: string | undefined) {
    this.modelId = modelId;
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

  /** Stops the generation before its next token. */
  cancel(): void {
    this.#native?.cancel();
    this.#over = true;
    this.#queue.length = 0;
    for (const waiter of this.#waiters.splice(0)) waiter.resolve({ value: undefined, done: true });
  }

  next(): Promise<IteratorResult<TokenChunk, undefined>> {
    if (this.#queue.length > 0) return Promise.resolve({ value: merge(this.#queue.splice(0)), done: false });
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

  #onAbort = (): void => this.cancel();

  #push(chunk: TokenChunk): void {
    if (this.#over) return;
    const waiter = this.#waiters.shift();
    if (waiter !== undefined) waiter.resolve({ value: chunk, done: false });
    else this.#queue.push(chunk);
  }

  #finish(end: NativeEnd): void {
    this.#signal?.removeEventListener('abort', this.#onAbort);
    if ('thrown' in end) this.#end({ error: end.thrown });
    else if (end.error !== undefined) this.#end({ error: toEngineError(end.error) });
    else {
      try {
        this.#end({ result: toResult(end) });
      } catch (error) {
        this.#end({ error });
      }
    }
  }

  #end(outcome: { result: GenerateResult } | { error: unknown }): void {
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

function chunk(text: string, pieceEnds: Uint32Array, tokens: NativeTokenDetail[] | undefined): TokenChunk {
  return tokens === undefined ? { text, tokenCount: pieceEnds.length, pieceEnds } : { text, tokenCount: pieceEnds.length, pieceEnds, tokens };
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

/** The plugin's EngineGenerateResult, refused as plugin_error where it breaks the ABI. */
function toResult(end: NativeEnd): GenerateResult {
  const finishReason = end.stopped ? 'cancelled' : FINISH_REASONS[end.finishReason!];
  if (finishReason === undefined) {
    throw new EngineError('plugin_error', `engine_generate_stream reported finish_reason ${end.finishReason}, which engine_api.h does not define`);
  }
  const promptTokens = end.promptTokens!;
  const completionTokens = end.completionTokens!;
  if (promptTokens < 0 || completionTokens < 0) {
    throw new EngineError('plugin_error', `engine_generate_stream reported negative token counts (prompt ${promptTokens}, completion ${completionTokens})`);
  }
  return { finishReason, promptTokens, completionTokens };
}
