import { resolve } from 'node:path';
import { binding } from './binding.js';
import type { NativeInfo, NativePlugin } from './binding.js';
import { EngineError, toEngineError } from './errors.js';
import { startPluginGeneration } from './generation.js';
import { TokenStream } from './token-stream.js';
import type {
  EmbedRequest,
  EmbedResult,
  Engine,
  EngineCapability,
  EngineExit,
  EngineInfo,
  EngineInitConfig,
  GenerateRequest,
  Generation,
  LoadedModelInfo,
  LoadProgressListener,
  ModelLoadParams,
  ModelStats,
} from './types.js';
import { checkModelId, toNativeEmbedRequest, toNativeGenerateRequest, toNativeInitConfig, toNativeModelLoadParams } from './validate.js';

/** The ABI version this host speaks: ENGINE_ABI_VERSION of include/engine_api.h. */
export const ENGINE_ABI_VERSION: number = binding.ENGINE_ABI_VERSION;

const { ENGINE_FLAG_THREAD_SAFE, ENGINE_FLAG_JSON_SCHEMA, ENGINE_FLAG_LOGIT_BIAS } = binding.constants;

/** The capability each optional entry point gives. */
const CAPABILITIES: Record<string, EngineCapability> = {
  engine_generate_stream: 'generate_stream',
  engine_model_load: 'model_load',
  engine_model_estimate_vram: 'model_estimate_vram',
  engine_get_vram_used: 'vram_used',
  engine_get_last_error: 'last_error',
  engine_model_get_stats: 'model_stats',
  engine_embed: 'embed',
};

/**
 * Opens the plugin library at `libraryPath` and checks what engine_get_info() says, before anything
 * else is called in it: the ABI version must be ours, engine_id and version must be there, and the id
 * must be `expectedId` (the manifest's) when given. Throws EngineError: open_failed, missing_symbol,
 * abi_mismatch, invalid_info, id_mismatch.
 */
export function openEngine(libraryPath: string, options: { expectedId?: string } = {}): Engine {
  return openPluginEngine(libraryPath, options);
}

/** openEngine() for the engine host (host-main.ts), which also generates to the token pipe. */
export function openPluginEngine(libraryPath: string, options: { expectedId?: string } = {}): PluginEngine {
  const path = resolve(libraryPath);
  let plugin: NativePlugin;
  try {
    plugin = new binding.Plugin(path);
  } catch (error) {
    throw toEngineError(error);
  }
  try {
    const info = checkInfo(plugin.info(), path, options.expectedId);
    const capabilities = plugin.optionalEntryPoints().flatMap((name) => CAPABILITIES[name] ?? []);
    if (info.threadSafe) capabilities.push('thread_safe');
    if (info.jsonSchema) capabilities.push('json_schema');
    if (info.logitBias) capabilities.push('logit_bias');
    return new PluginEngine(path, plugin, info, capabilities);
  } catch (error) {
    plugin.close();
    throw toEngineError(error);
  }
}

function checkInfo(raw: NativeInfo | null, path: string, expectedId: string | undefined): EngineInfo {
  if (raw === null) throw new EngineError('invalid_info', `engine_get_info() returned NULL in ${path}`);
  if (raw.abiVersion !== ENGINE_ABI_VERSION) {
    throw new EngineError('abi_mismatch', `ABI version mismatch: expected ${ENGINE_ABI_VERSION}, got ${raw.abiVersion}`);
  }
  if (!raw.id) throw new EngineError('invalid_info', `engine_get_info() in ${path} has no engine_id`);
  if (!raw.version) throw new EngineError('invalid_info', `engine_get_info() in ${path} has no version`);
  if (expectedId !== undefined && raw.id !== expectedId) {
    throw new EngineError('id_mismatch', `engine id mismatch: the manifest says '${expectedId}' but ${path} reports '${raw.id}'`);
  }
  const flags = raw.flags ?? 0;
  return {
    abiVersion: raw.abiVersion,
    id: raw.id,
    version: raw.version,
    threadSafe: (flags & ENGINE_FLAG_THREAD_SAFE) !== 0,
    jsonSchema: (flags & ENGINE_FLAG_JSON_SCHEMA) !== 0,
    logitBias: (flags & ENGINE_FLAG_LOGIT_BIAS) !== 0,
  };
}

type Phase = 'opened' | 'initializing' | 'ready' | 'shut_down';

const CLOSED: EngineExit = { code: 'closed', message: 'the engine was closed', exitCode: null, signal: null };

/**
 * An opened plugin. Each method checks the state synchronously right before it calls into the plugin,
 * so nothing reaches a plugin that is not initialised, shut down or closed. Calls run on threads of
 * their own (native/plugin.cc); the native side serialises them when the plugin is not thread-safe.
 */
export class PluginEngine implements Engine {
  readonly path: string;
  readonly info: EngineInfo;
  readonly capabilities: readonly EngineCapability[];

  readonly exited: Promise<EngineExit>;

  readonly #plugin: NativePlugin;
  #exit!: (exit: EngineExit) => void;
  #phase: Phase = 'opened';
  #closed = false;
  /** engine_init succeeded and engine_shutdown has not been called. */
  #needsShutdown = false;
  #shuttingDown: Promise<void> | undefined;
  #closing: Promise<void> | undefined;
  /** Calls into the plugin in flight; shutdown and close wait for them. */
  readonly #calls = new Set<Promise<unknown>>();
  readonly #generations = new Set<TokenStream>();
  /** Models whose unloading has begun: no new generation may start on them. */
  readonly #unloading = new Set<string>();
  /** For a plugin without engine_model_load: the id under which its single model was loaded. */
  #defaultModelId: string | undefined;
  /** Each loaded model's embedding length, as engine_model_load reported it. */
  readonly #embeddingLengths = new Map<string, number>();
  /** engine_embed calls in flight, by model: unloading a model waits for its own. */
  readonly #embeds = new Map<string, Set<Promise<unknown>>>();

  constructor(path: string, plugin: NativePlugin, info: EngineInfo, capabilities: EngineCapability[]) {
    this.path = path;
    this.#plugin = plugin;
    this.info = info;
    this.capabilities = Object.freeze(capabilities);
    this.exited = new Promise((resolveExit) => (this.#exit = resolveExit));
  }

  async init(config: EngineInitConfig): Promise<void> {
    if (this.#closed) throw this.#closedError();
    if (this.#phase !== 'opened') throw new EngineError('invalid_argument', `init() was already called on engine '${this.info.id}'`);
    const native = toNativeInitConfig(config);
    this.#phase = 'initializing';
    try {
      await this.#track(this.#plugin.init(native));
    } catch (error) {
      // engine_api.h: when engine_init fails the host unloads the library without engine_shutdown.
      this.#closed = true;
      this.#closing = Promise.resolve();
      this.#plugin.close();
      this.#exit(CLOSED);
      throw error;
    }
    this.#needsShutdown = true;
    if (this.#phase === 'initializing') this.#phase = 'ready';
  }

  async loadModel(modelId: string, params: ModelLoadParams, onProgress?: LoadProgressListener): Promise<LoadedModelInfo> {
    this.#assertReady();
    checkModelId(modelId);
    const native = toNativeModelLoadParams(params);
    if (this.#has('model_load')) {
      const report = onProgress && ((fraction: number, phase: string) => onProgress({ phase, fraction }));
      const loaded = await this.#track(this.#plugin.modelLoad(modelId, native, report));
      if (!this.#has('embed')) loaded.embeddingLength = 0;
      this.#embeddingLengths.set(modelId, loaded.embeddingLength);
      return loaded;
    }

    // engine_load_model holds one default model, replacing any earlier one.
    if (this.#defaultModelId !== undefined && this.#defaultModelId !== modelId) {
      throw new EngineError(
        'unsupported',
        `engine '${this.info.id}' holds one model at a time (it has no engine_model_load); unload '${this.#defaultModelId}' first`,
      );
    }
    this.#defaultModelId = modelId;
    try {
      await this.#track(this.#plugin.loadModel(native.path));
    } catch (error) {
      this.#defaultModelId = undefined;
      throw error;
    }
    return { contextLength: native.contextLength, vramBytes: 0, embeddingLength: 0 };
  }

  /** Cancels the generations running on the model and waits for them first: plugins are promised that. */
  async unloadModel(modelId: string): Promise<void> {
    this.#assertReady();
    checkModelId(modelId);
    this.#unloading.add(modelId);
    try {
      const running = [...this.#generations].filter((generation) => generation.modelId === modelId);
      for (const generation of running) generation.cancel();
      await Promise.all(running.map((generation) => generation.ended));
      await Promise.allSettled([...(this.#embeds.get(modelId) ?? [])]);
      this.#assertReady();
      if (this.#has('model_load')) {
        await this.#track(this.#plugin.modelUnload(modelId));
        this.#embeddingLengths.delete(modelId);
      } else if (this.#defaultModelId === modelId) {
        this.#defaultModelId = undefined; // engine_load_model has no counterpart: the model stays until replaced
      } else {
        throw new EngineError('model_not_loaded', `model '${modelId}' is not loaded`);
      }
    } finally {
      this.#unloading.delete(modelId);
    }
  }

  async estimateVram(params: ModelLoadParams): Promise<number | null> {
    this.#assertReady();
    const native = toNativeModelLoadParams(params);
    return this.#has('model_estimate_vram') ? this.#track(this.#plugin.estimateVram(native)) : null;
  }

  async vramUsed(): Promise<number | null> {
    this.#assertReady();
    return this.#has('vram_used') ? this.#plugin.vramUsed() : null;
  }

  async modelStats(modelId: string): Promise<ModelStats | null> {
    this.#assertReady();
    return this.#has('model_stats') ? this.#plugin.modelStats(checkModelId(modelId)) : null;
  }

  generate(request: GenerateRequest, options: { signal?: AbortSignal } = {}): Generation {
    return this.#generate(request, options.signal, undefined);
  }

  /**
   * In an engine host (host-main.ts): generates with the tokens and the end written to the token pipe as
   * frames of `pipeGeneration`; the returned generation only ends.
   */
  generateToPipe(request: GenerateRequest, pipeGeneration: number, signal: AbortSignal): TokenStream {
    return this.#generate(request, signal, pipeGeneration);
  }

  #generate(request: GenerateRequest, signal: AbortSignal | undefined, pipeGeneration: number | undefined): TokenStream {
    let generation: TokenStream;
    try {
      this.#assertReady();
      const modelId = request?.modelId === undefined ? undefined : checkModelId(request.modelId);
      if (modelId !== undefined && this.#unloading.has(modelId)) {
        throw new EngineError('model_not_loaded', `model '${modelId}' is being unloaded`);
      }
      // Without engine_model_load the plugin knows only its default model, which model_id NULL selects.
      const byId = this.#has('model_load');
      if (!byId && modelId !== undefined && modelId !== this.#defaultModelId) {
        throw new EngineError('model_not_loaded', `model '${modelId}' is not loaded`);
      }
      if (request?.jsonSchema !== undefined && !this.info.jsonSchema) {
        throw new EngineError('unsupported', `engine '${this.info.id}' cannot hold its output to a JSON Schema`);
      }
      if (request?.logitBias !== undefined && !this.info.logitBias) {
        throw new EngineError('unsupported', `engine '${this.info.id}' cannot bias token logits`);
      }
      const native = toNativeGenerateRequest(request, byId ? (modelId ?? null) : null);
      generation = startPluginGeneration(this.#plugin, native, modelId, signal, pipeGeneration);
    } catch (error) {
      return TokenStream.failed(toEngineError(error));
    }
    this.#generations.add(generation);
    void generation.ended.then(() => this.#generations.delete(generation));
    return generation;
  }

  async embed(request: EmbedRequest): Promise<EmbedResult> {
    this.#assertReady();
    const modelId = checkModelId(request?.modelId);
    const { inputs, flags } = toNativeEmbedRequest(request);
    if (!this.#has('embed')) throw new EngineError('unsupported', `engine '${this.info.id}' gives no embeddings`);
    const length = this.#embeddingLengths.get(modelId);
    if (length === undefined || this.#unloading.has(modelId)) throw new EngineError('model_not_loaded', `model '${modelId}' is not loaded`);
    if (length === 0) throw new EngineError('unsupported', `model '${modelId}' gives no embeddings`);
    const call = this.#track(this.#plugin.embed(modelId, inputs, flags, length));
    const inFlight = this.#embeds.get(modelId) ?? new Set();
    this.#embeds.set(modelId, inFlight.add(call));
    try {
      const { embeddings, promptTokens } = await call;
      return { embeddings: inputs.map((_, i) => embeddings.subarray(i * length, (i + 1) * length)), promptTokens };
    } finally {
      inFlight.delete(call);
      if (inFlight.size === 0) this.#embeds.delete(modelId);
    }
  }

  /** Cancels generations, waits for every call in flight, then calls engine_shutdown (if init succeeded). */
  shutdown(): Promise<void> {
    if (this.#closed) return Promise.reject(this.#closedError());
    this.#shuttingDown ??= this.#shutdown();
    return this.#shuttingDown;
  }

  /** shutdown() if needed, then unloads the library. Later calls reject with `closed`. */
  close(): Promise<void> {
    this.#closing ??= this.#close();
    return this.#closing;
  }

  async #shutdown(): Promise<void> {
    this.#phase = 'shut_down';
    await this.#quiesce();
    if (this.#needsShutdown) {
      this.#needsShutdown = false;
      await this.#track(this.#plugin.shutdown());
    }
  }

  async #close(): Promise<void> {
    this.#closed = true;
    this.#shuttingDown ??= this.#shutdown();
    await this.#shuttingDown;
    this.#plugin.close();
    this.#exit(CLOSED);
  }

  /** Cancels every generation and waits until nothing runs in the plugin. */
  async #quiesce(): Promise<void> {
    for (const generation of this.#generations) generation.cancel();
    await Promise.allSettled([...[...this.#generations].map((generation) => generation.ended), ...this.#calls]);
  }

  async #track<T>(call: Promise<T>): Promise<T> {
    this.#calls.add(call);
    try {
      return await call;
    } catch (error) {
      throw toEngineError(error);
    } finally {
      this.#calls.delete(call);
    }
  }

  #has(capability: EngineCapability): boolean {
    return this.capabilities.includes(capability);
  }

  #assertReady(): void {
    if (this.#closed) throw this.#closedError();
    if (this.#phase === 'shut_down') throw new EngineError('not_initialized', `engine '${this.info.id}' was shut down`);
    if (this.#phase !== 'ready') throw new EngineError('not_initialized', `engine '${this.info.id}' is not initialised: call init() first`);
  }

  #closedError(): EngineError {
    return new EngineError('closed', `engine '${this.info.id}' is closed`);
  }
}
