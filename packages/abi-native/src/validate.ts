import { isAbsolute } from 'node:path';
import { binding } from './binding.js';
import type { NativeGenerateRequest, NativeInitConfig, NativeModelLoadParams } from './binding.js';
import { EngineError } from './errors.js';
import type { EmbedRequest, EngineInitConfig, GenerateRequest, ModelLoadParams } from './types.js';

// Arguments are checked here, so that the native half can trust them and a bad value gets a message
// that names it instead of reaching a plugin.

const INT32_MAX = 2 ** 31 - 1;

function invalid(name: string, expected: string, value: unknown): EngineError {
  return new EngineError('invalid_argument', `${name} must be ${expected}, got ${JSON.stringify(value) ?? String(value)}`);
}

function integer(name: string, value: unknown, fallback: number, max = Number.MAX_SAFE_INTEGER): number {
  if (value === undefined) return fallback;
  if (typeof value !== 'number' || !Number.isInteger(value) || value < 0 || value > max) {
    throw invalid(name, `an integer from 0 to ${max}`, value);
  }
  return value;
}

function real(name: string, value: unknown, fallback: number, min: number, max: number): number {
  if (value === undefined) return fallback;
  if (typeof value !== 'number' || !(value >= min && value <= max)) throw invalid(name, `a number from ${min} to ${max}`, value);
  return value;
}

/** A string the C side receives NUL-terminated: a NUL inside would silently cut it. */
function cString(name: string, value: unknown): string {
  if (typeof value !== 'string' || value === '' || value.includes('\0')) {
    throw invalid(name, 'a non-empty string without NUL characters', value);
  }
  return value;
}

function flag(name: string, value: unknown): boolean {
  if (value !== undefined && typeof value !== 'boolean') throw invalid(name, 'a boolean', value);
  return value === true;
}

export function checkModelId(modelId: unknown): string {
  return cString('modelId', modelId);
}

export function toNativeInitConfig(config: EngineInitConfig): NativeInitConfig {
  const pluginDir = cString('pluginDir', config?.pluginDir);
  if (!isAbsolute(pluginDir)) throw invalid('pluginDir', 'an absolute path', pluginDir);
  return {
    gpuBackend: cString('gpuBackend', config.gpuBackend),
    pluginDir,
    vramBudgetBytes: integer('vramBudgetBytes', config.vramBudgetBytes, 0),
    deviceIndex: integer('deviceIndex', config.deviceIndex, 0, INT32_MAX),
    threads: integer('threads', config.threads, 0, INT32_MAX),
  };
}

export function toNativeModelLoadParams(params: ModelLoadParams): NativeModelLoadParams {
  if (params?.format !== 'gguf' && params?.format !== 'safetensors' && params?.format !== 'onnx') {
    throw invalid('format', "'gguf', 'safetensors' or 'onnx'", params?.format);
  }
  return {
    path: cString('path', params.path),
    format: params.format,
    contextLength: integer('contextLength', params.contextLength, 0, INT32_MAX),
    quantization: params.quantization === undefined ? null : cString('quantization', params.quantization),
    vramBudgetBytes: integer('vramBudgetBytes', params.vramBudgetBytes, 0),
    parallel: integer('parallel', params.parallel, 0, INT32_MAX),
  };
}

const {
  ENGINE_GENERATE_LOGPROBS: LOGPROBS,
  ENGINE_GENERATE_IGNORE_EOS: IGNORE_EOS,
  ENGINE_GENERATE_ADD_SPECIAL: ADD_SPECIAL,
  ENGINE_GENERATE_PARSE_SPECIAL: PARSE_SPECIAL,
} = binding.constants;

/**
 * The request as EngineGenerateParams wants it. Unset sampling parameters take OpenAI's defaults
 * (temperature 1, top_p 1, the rest off); maxTokens 0 means until the context is full.
 */
export function toNativeGenerateRequest(request: GenerateRequest, modelId: string | null): NativeGenerateRequest {
  if (typeof request?.prompt !== 'string') throw invalid('prompt', 'a string', request?.prompt);
  const stop = request.stop ?? [];
  if (!Array.isArray(stop)) throw invalid('stop', 'an array of strings', stop);
  return {
    modelId,
    prompt: request.prompt,
    maxTokens: integer('maxTokens', request.maxTokens, 0, INT32_MAX),
    temperature: real('temperature', request.temperature, 1, 0, Number.MAX_VALUE),
    topP: real('topP', request.topP, 1, 0, 1),
    topK: integer('topK', request.topK, 0, INT32_MAX),
    minP: real('minP', request.minP, 0, 0, 1),
    presencePenalty: real('presencePenalty', request.presencePenalty, 0, -Number.MAX_VALUE, Number.MAX_VALUE),
    frequencyPenalty: real('frequencyPenalty', request.frequencyPenalty, 0, -Number.MAX_VALUE, Number.MAX_VALUE),
    seed: request.seed === undefined ? null : integer('seed', request.seed, 0),
    stop: stop.map((s, i) => cString(`stop[${i}]`, s)),
    jsonSchema: request.jsonSchema === undefined ? null : cString('jsonSchema', request.jsonSchema),
    ...logitBias(request.logitBias),
    flags:
      (flag('logprobs', request.logprobs) ? LOGPROBS : 0) |
      (flag('ignoreEos', request.ignoreEos) ? IGNORE_EOS : 0) |
      (flag('addSpecial', request.addSpecial) ? ADD_SPECIAL : 0) |
      (flag('parseSpecial', request.parseSpecial) ? PARSE_SPECIAL : 0),
  };
}

/** The inputs of an embedding request, and the flags EngineEmbedParams carries. */
export function toNativeEmbedRequest(request: EmbedRequest): { inputs: string[]; flags: number } {
  if (!Array.isArray(request?.inputs)) throw invalid('inputs', 'an array of strings', request?.inputs);
  return {
    inputs: request.inputs.map((input, i) => {
      if (typeof input !== 'string') throw invalid(`inputs[${i}]`, 'a string', input);
      return input;
    }),
    flags: (flag('addSpecial', request.addSpecial) ? ADD_SPECIAL : 0) | (flag('parseSpecial', request.parseSpecial) ? PARSE_SPECIAL : 0),
  };
}

/** { tokenId: bias } as the two arrays EngineGenerateParams carries. */
function logitBias(bias: unknown): { logitBiasTokens: number[]; logitBiasValues: number[] } {
  if (bias === undefined) return { logitBiasTokens: [], logitBiasValues: [] };
  if (typeof bias !== 'object' || bias === null || Array.isArray(bias)) throw invalid('logitBias', 'an object of token id: bias', bias);
  const entries = Object.entries(bias);
  return {
    logitBiasTokens: entries.map(([id]) => integer(`logitBias key ${id}`, Number(id), 0, INT32_MAX)),
    logitBiasValues: entries.map(([id, value]) => real(`logitBias[${id}]`, value, 0, -Number.MAX_VALUE, Number.MAX_VALUE)),
  };
}
