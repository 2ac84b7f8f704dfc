import { binding } from './binding.js';
import type { NativeEnd, NativeGenerateRequest, NativePlugin, NativeTokenDetail } from './binding.js';
import { EngineError, toEngineError } from './errors.js';
import { FINISH_REASONS, TokenStream, type GenerationOutcome } from './token-stream.js';
import type { GenerateResult, TokenChunk } from './types.js';

/**
 * Starts one generate() call on a thread of its own (native/generation.cc) and returns the stream its
 * chunks arrive on. With `pipeGeneration` (in an engine host) the tokens and the end go to the token pipe
 * instead, and the stream only ends.
 */
export function startPluginGeneration(
  plugin: NativePlugin,
  request: NativeGenerateRequest,
  modelId: string | undefined,
  signal?: AbortSignal,
  pipeGeneration?: number,
): TokenStream {
  if (signal?.aborted) return TokenStream.cancelled(modelId);
  let native: { cancel(): void } | undefined;
  const stream = new TokenStream(modelId, () => native?.cancel());
  const onAbort = () => stream.cancel();
  try {
    native = new binding.Generation(
      plugin,
      request,
      (text, pieceEnds, tokens, end) => {
        if (end === undefined) {
          stream.push(chunk(text!, pieceEnds!, tokens));
          return;
        }
        signal?.removeEventListener('abort', onAbort);
        stream.end(outcomeOf(end));
      },
      pipeGeneration,
    );
  } catch (error) {
    stream.end({ error: toEngineError(error) });
    return stream;
  }
  signal?.addEventListener('abort', onAbort, { once: true });
  return stream;
}

function chunk(text: string, pieceEnds: Uint32Array, tokens: NativeTokenDetail[] | undefined): TokenChunk {
  return tokens === undefined
    ? { text, tokenCount: pieceEnds.length, pieceEnds }
    : { text, tokenCount: pieceEnds.length, pieceEnds, tokens };
}

/** How a generation ended, from the native end event (or the token pipe's end frame, which carries the same). */
export function outcomeOf(end: NativeEnd): GenerationOutcome {
  if ('thrown' in end) return { error: end.thrown };
  if (end.error !== undefined) return { error: toEngineError(end.error) };
  try {
    return { result: toResult(end) };
  } catch (error) {
    return { error };
  }
}

/** The plugin's EngineGenerateResult, refused as plugin_error where it breaks the ABI. */
function toResult(end: NativeEnd): GenerateResult {
  const finishReason = end.stopped ? 'cancelled' : FINISH_REASONS[end.finishReason!];
  if (finishReason === undefined) {
    throw new EngineError(
      'plugin_error',
      `engine_generate_stream reported finish_reason ${end.finishReason}, which engine_api.h does not define`,
    );
  }
  const promptTokens = end.promptTokens!;
  const completionTokens = end.completionTokens!;
  if (promptTokens < 0 || completionTokens < 0) {
    throw new EngineError(
      'plugin_error',
      `engine_generate_stream reported negative token counts (prompt ${promptTokens}, completion ${completionTokens})`,
    );
  }
  return { finishReason, promptTokens, completionTokens };
}
