// A loaded model's state in the registry: what it was loaded with, who holds it, and the checks a later load of
// the same id must pass.
import type { EmbedResult, Engine } from '@llm-node/abi-native';
import { MODEL_FORMATS } from '@llm-node/manifest';
import { NodeError } from './errors.js';
import { LeasedGeneration } from './leased-generation.js';
import type { LoadedModel, LoadModelOptions, ModelLease } from './types.js';

export interface ModelState {
  id: string;
  engine: Engine;
  engineId: string;
  /** What the load asked for, which a later load of the id must not contradict. */
  requested: { contextLength: number; parallel: number };
  /** Set while the model unloads: a request for it waits, then loads it again. */
  unloading: Promise<void> | null;
  model: Omit<LoadedModel, 'lastUsedAt' | 'activeRequests'>;
  lastUsedAt: number;
  activeRequests: number;
  /** Generations started on it and not ended. */
  generating: number;
}

// The defaults for loads that name none (the CLI takes them from here): as llama.cpp's server.
export const DEFAULT_CONTEXT_LENGTH = 4096;
export const DEFAULT_PARALLEL = 4;

// Inputs per engine_embed call: calls that cannot be cancelled stay short, and an unload waits for one at most.
const EMBED_INPUTS_PER_CALL = 16;

export function lease(state: ModelState, toPublic: (error: unknown) => NodeError): ModelLease {
  state.activeRequests += 1;
  state.lastUsedAt = Date.now();
  let released = false;
  return {
    model: snapshot(state),
    generate: (request, options) => {
      state.generating += 1;
      const generation = new LeasedGeneration(state.engine.generate({ ...request, modelId: state.id }, options), toPublic);
      void generation.result.catch(() => undefined).finally(() => (state.generating -= 1));
      return generation;
    },
    embed: async (request, options) => {
      if (state.model.embeddingLength === 0) {
        throw new NodeError(`Model '${state.id}' gives no embeddings (engine '${state.engineId}')`, {
          type: 'invalid_request_error',
          code: 'embeddings_unsupported',
        });
      }
      const result: EmbedResult = { embeddings: [], promptTokens: 0 };
      for (let i = 0; i < request.inputs.length; i += EMBED_INPUTS_PER_CALL) {
        options?.signal?.throwIfAborted();
        const inputs = request.inputs.slice(i, i + EMBED_INPUTS_PER_CALL);
        const part = await state.engine.embed({ ...request, inputs, modelId: state.id }).catch((error: unknown) => {
          throw toPublic(error);
        });
        result.embeddings.push(...part.embeddings);
        result.promptTokens += part.promptTokens;
      }
      return result;
    },
    release() {
      if (released) return;
      released = true;
      state.activeRequests -= 1;
      state.lastUsedAt = Date.now();
    },
  };
}

export function snapshot(state: ModelState): LoadedModel {
  return { ...state.model, lastUsedAt: state.lastUsedAt, activeRequests: state.activeRequests };
}

/** A load of a loaded (or loading) id with settings of its own must name the ones it was loaded with. */
export function checkSameLoad(modelId: string, state: ModelState, options: LoadModelOptions): void {
  if (options.format !== undefined && options.format !== state.model.format) {
    throw new NodeError(`Model '${modelId}' is ${state.model.format}, not ${options.format}`, {
      type: 'invalid_request_error',
      code: 'format_mismatch',
    });
  }
  for (const [field, name] of [
    ['contextLength', 'context_length'],
    ['parallel', 'parallel'],
  ] as const) {
    const wanted = options[field];
    if (wanted !== undefined && wanted !== state.requested[field]) {
      throw new NodeError(
        `Model '${modelId}' is loaded with ${name} ${state.requested[field]}, not ${wanted}; unload it first to load it with other settings`,
        { type: 'invalid_request_error', code: 'model_loaded_differently', status: 409 },
      );
    }
  }
}

export function checkLoadOptions(options: LoadModelOptions): void {
  for (const field of ['contextLength', 'parallel'] as const) {
    const value = options[field];
    if (value !== undefined && !(Number.isSafeInteger(value) && value > 0)) {
      throw new NodeError(`${field} must be a positive integer, got ${JSON.stringify(value)}`, {
        type: 'invalid_request_error',
        code: 'invalid_parameter',
      });
    }
  }
  if (options.format !== undefined && !MODEL_FORMATS.includes(options.format)) {
    const formats = MODEL_FORMATS.map((format) => `'${format}'`)
      .join(', ')
      .replace(/, ([^,]*)$/, ' or $1');
    throw new NodeError(`format must be ${formats}, got ${JSON.stringify(options.format)}`, {
      type: 'invalid_request_error',
      code: 'invalid_parameter',
    });
  }
}
