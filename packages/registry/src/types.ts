// The registry's public types: its options, and what it answers about models.
import type { EmbedRequest, EmbedResult, EngineHostTimeouts, GenerateRequest, Generation } from '@llm-node/abi-native';
import type { GpuBackend, GpuDetection, VramSample, VramSampler } from '@llm-node/gpu-detect';
import type { ModelFormat } from '@llm-node/manifest';
import type { NodeError } from './errors.js';
import type { OpenEngine } from './discovery.js';
import type { ModelInfo } from './model-info.js';
import type { RestartPolicy } from './engine-supervisor.js';

/** pino's `logger.info(fields, message)` shape, so a pino logger fits as is. */
export interface RegistryLogger {
  info(fields: Record<string, unknown>, message: string): void;
  warn(fields: Record<string, unknown>, message: string): void;
  error(fields: Record<string, unknown>, message: string): void;
}

export interface RegistryOptions {
  /** Engine folders, searched in order; the first plugin to take an id keeps it. Each must exist. */
  enginesDirs: readonly string[];
  modelsDir: string;
  gpu: GpuDetection;
  /** The GPU the engines run on, by its index in `gpu.devices`; default 0. */
  deviceIndex?: number;
  /** The most device memory all models may hold together; default: the device's total (Infinity without one). */
  vramLimitBytes?: number;
  /**
   * Opens plugin libraries; default: each in an engine host process of its own (abi-native's EngineHost).
   * Benchmarks pass abi-native's openEngine to compare with plugins in this process; tests may pass fakes.
   */
  openEngine?: OpenEngine;
  /** Engine ids whose plugins may use the network; every other engine host is denied it. */
  allowNetwork?: readonly string[];
  /** How long engine hosts may take before they are killed as hung (EngineHost's defaults otherwise). */
  engineTimeouts?: EngineHostTimeouts;
  /** When an engine that keeps crashing is given up. */
  restartPolicy?: RestartPolicy;
  /** Reads free device memory; default gpu-detect's sampler for `gpu`. */
  sampler?: VramSampler;
  logger?: RegistryLogger;
  /** Context length for loads that name none; default min(the model's trained length, 4096). */
  defaultContextLength?: number;
  /** Parallel sequences for loads that name none; default 4, as llama.cpp's server. */
  defaultParallel?: number;
  /**
   * Models, by the ids loadModel takes, whose files are found and headers read while the engines open: a node
   * started to serve them begins their loads without that wait. A model that cannot be read is left for its load
   * to report.
   */
  readAhead?: readonly string[];
}

export interface LoadModelOptions {
  /** The format the caller expects; a model stored in another format is a 400 `format_mismatch`. */
  format?: ModelFormat;
  /** Tokens of context per request; default min(the model's trained length, 4096). */
  contextLength?: number;
  /** Requests generated at once on the model, each with its own KV cache; default the registry's defaultParallel. */
  parallel?: number;
}

/** A loaded model as the server and the monitor see it (a snapshot). */
export interface LoadedModel {
  /** The model_id it was loaded under, exactly as requested (`llama-3.2-1b`, `llama-3.2-1b:Q4_K_M`). */
  id: string;
  engineId: string;
  format: ModelFormat;
  architecture: string;
  /** The GGUF file (first shard) or safetensors folder the engine opened. */
  path: string;
  quantization: string | null;
  /** Tokens of context per request, as the engine reported after loading. */
  contextLength: number;
  parallel: number;
  /** Device memory the model holds: what the engine reports, or the admitted estimate when it reports 0. */
  vramBytes: number;
  /**
   * Floats in each of the model's embeddings; 0 when it gives none: its engine's manifest does not list the
   * `embedding` modality, the plugin has no engine_embed, or the model has no embeddings to give.
   */
  embeddingLength: number;
  /** Epoch milliseconds. */
  loadedAt: number;
  /** Epoch milliseconds: the last acquire or release. */
  lastUsedAt: number;
  activeRequests: number;
  info: ModelInfo;
}

/** A model held for generations; the monitor never unloads it until release() (idempotent). */
export interface ModelLease {
  model: LoadedModel;
  /** Generates on the leased model; what fails is a NodeError. */
  generate(request: Omit<GenerateRequest, 'modelId'>, options?: { signal?: AbortSignal }): Generation;
  /**
   * Embeds the inputs with the leased model, a few at a time (engine_embed cannot be cancelled: `signal` stops
   * between calls). What fails is a NodeError: `embeddings_unsupported` (400) for a model that gives none.
   */
  embed(request: Omit<EmbedRequest, 'modelId'>, options?: { signal?: AbortSignal }): Promise<EmbedResult>;
  release(): void;
}

/** What a model is doing now: the figures load balancers route by (the server's /metrics). */
export interface ModelActivity {
  id: string;
  /** Generations being decoded. */
  running: number;
  /** Requests for the model not decoding yet: waiting for its load, or for a free sequence in the engine. */
  waiting: number;
  /** Sequences the model decodes at once (its `parallel`). */
  parallel: number;
  /** KV cache cells (token positions) of the model, all sequences together; null when its engine does not say. */
  kvCells: number | null;
  /** Fraction of those cells the running generations hold, 0–1; null when its engine does not say. */
  kvCacheUsage: number | null;
}

/** What a reload of the engines folders changed, by engine id. */
export interface EngineReload {
  /** Plugins opened that did not serve before. */
  added: string[];
  /** Plugins rebuilt: opened anew, the old one closed once its requests finished. */
  replaced: string[];
  /** Plugins whose folder is gone (or no longer loads): closed once their requests finished. */
  removed: string[];
}

/** Device memory as admission sees it, on the one device the engines run on. */
export interface VramStatus {
  backend: GpuBackend;
  /** The device's index in the detection. */
  deviceIndex: number;
  limitBytes: number;
  /** Held by loaded models (the sum of their vramBytes). */
  heldBytes: number;
  /** Detected in use now on the device by every process; null when the backend cannot tell. */
  usedBytes: number | null;
  /** Detected free now on the device (free RAM on `cpu`); null when the backend cannot tell. */
  freeBytes: number | null;
  /** What a new model may take: min(limit − held, detected free). */
  availableBytes: number;
  /** Every device's sample. */
  devices: VramSample[];
}

/** A model of the models folder as the catalogue describes it, loaded or not. */
export interface CatalogueEntry {
  /** The model_id that loads it. */
  id: string;
  /** `unusable`: its files cannot be read as a model, or no loaded engine can serve it (`error` says why). */
  state: 'available' | 'loading' | 'loaded' | 'unloading' | 'unusable';
  format: ModelFormat | null;
  quantization: string | null;
  architecture: string | null;
  /** Its files' bytes on disk. */
  sizeBytes: number | null;
  /** The engine that serves it, or would: by its format and architecture. */
  engineId: string | null;
  /** The VRAM formula's figure at the load defaults (context length, parallel sequences). */
  estimatedVramBytes: number | null;
  error: NodeError | null;
  /** While loaded: the model as `models()` gives it. */
  loaded: LoadedModel | null;
}
