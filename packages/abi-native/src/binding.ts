import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';
import type { LoadedModelInfo, ModelStats } from './types.js';

/** engine_get_info() as read by the native half: only abiVersion when it is not ours; null for NULL. */
export interface NativeInfo {
  abiVersion: number;
  id?: string | null;
  version?: string | null;
  flags?: number;
}

export interface NativeInitConfig {
  gpuBackend: string;
  pluginDir: string;
  vramBudgetBytes: number;
  deviceIndex: number;
  threads: number;
}

export interface NativeModelLoadParams {
  path: string;
  format: string;
  contextLength: number;
  quantization: string | null;
  vramBudgetBytes: number;
  parallel: number;
}

/** EngineGenerateParams field for field; `seed: null` is ENGINE_SEED_RANDOM, `modelId: null` the default model. */
export interface NativeGenerateRequest {
  modelId: string | null;
  prompt: string;
  maxTokens: number;
  temperature: number;
  topP: number;
  topK: number;
  minP: number;
  presencePenalty: number;
  frequencyPenalty: number;
  seed: number | null;
  stop: string[];
  /** null: free text. */
  jsonSchema: string | null;
  /** Token ids and the bias added to each one's logit; both empty for none. */
  logitBiasTokens: number[];
  logitBiasValues: number[];
  flags: number;
}

/** How a generation ended, as native/generation.cc reports it. */
export interface NativeEnd {
  /** The host stopped it: a token was refused after cancel(), or it never reached the plugin. */
  stopped: boolean;
  /** What the event handler threw. */
  thrown?: unknown;
  error?: unknown;
  finishReason?: number;
  promptTokens?: number;
  completionTokens?: number;
}

export interface NativeTokenDetail {
  id: number;
  text: string;
  bytes: number[];
  logprob: number;
}

/** A batch of tokens (`end` undefined), or, once and last, the end. */
export type NativeEventHandler = (
  text: string | undefined,
  pieceEnds: Uint32Array | undefined,
  tokens: NativeTokenDetail[] | undefined,
  end?: NativeEnd,
) => void;

export interface NativePlugin {
  info(): NativeInfo | null;
  optionalEntryPoints(): string[];
  init(config: NativeInitConfig): Promise<void>;
  loadModel(path: string): Promise<void>;
  modelLoad(id: string, params: NativeModelLoadParams, onProgress?: (fraction: number, phase: string) => void): Promise<LoadedModelInfo>;
  modelUnload(id: string): Promise<void>;
  estimateVram(params: NativeModelLoadParams): Promise<number>;
  vramUsed(): number;
  modelStats(id: string): ModelStats | null;
  /** The inputs' embeddings one after another, embeddingLength floats each. */
  embed(id: string, inputs: string[], flags: number, embeddingLength: number): Promise<{ embeddings: Float32Array; promptTokens: number }>;
  shutdown(): Promise<void>;
  close(): void;
}

export interface NativeGeneration {
  cancel(): void;
}

/**
 * The native half (native/*.cc). It trusts its arguments: engine.ts validates and normalises them, and
 * turns what it throws or rejects with into EngineError.
 */
export interface NativeBinding {
  ENGINE_ABI_VERSION: number;
  /** engine_api.h's constants, and the marker line of a denied socket (native/sandbox.h). */
  constants: {
    ENGINE_ABI_VERSION: number;
    ENGINE_FLAG_THREAD_SAFE: number;
    ENGINE_FLAG_JSON_SCHEMA: number;
    ENGINE_FLAG_LOGIT_BIAS: number;
    ENGINE_GENERATE_LOGPROBS: number;
    ENGINE_GENERATE_IGNORE_EOS: number;
    ENGINE_GENERATE_ADD_SPECIAL: number;
    ENGINE_GENERATE_PARSE_SPECIAL: number;
    DENIED_SOCKET_MARKER: string;
  };
  /** Denies this process the network for good (native/sandbox.h). */
  denyNetwork(): { enforced: boolean; how: string };
  /** Token callbacks plugins have made in this process, polls included. */
  progress(): number;
  /** In an engine host: generations started with a pipe generation id write their frames to `fd` (src/token-frames.ts). */
  openTokenPipe(fd: number): void;
  Plugin: new (absolutePath: string) => NativePlugin;
  /** With `pipeGeneration`, tokens and the end go to the token pipe, and onEvent receives only the end. */
  Generation: new (
    plugin: NativePlugin,
    request: NativeGenerateRequest,
    onEvent: NativeEventHandler,
    pipeGeneration?: number,
  ) => NativeGeneration;
}

// A prebuild from prebuilds/<platform>-<arch>/ when one matches, else build/Release (node-gyp-build).
export const binding = createRequire(import.meta.url)('node-gyp-build')(fileURLToPath(new URL('..', import.meta.url))) as NativeBinding;
