/** What engine_get_info() said, plus the flags decoded. */
export interface EngineInfo {
  abiVersion: number;
  id: string;
  version: string;
  /** ENGINE_FLAG_THREAD_SAFE: calls may overlap; otherwise the host serialises every call. */
  threadSafe: boolean;
  /** ENGINE_FLAG_JSON_SCHEMA: generations may be held to a JSON Schema. */
  jsonSchema: boolean;
  /** ENGINE_FLAG_LOGIT_BIAS: generations may bias given tokens' logits. */
  logitBias: boolean;
}

/** Optional entry points (and flags) the plugin provides, as found when it was opened. */
export type EngineCapability =
  | 'generate_stream'
  | 'model_load'
  | 'model_estimate_vram'
  | 'vram_used'
  | 'model_stats'
  | 'last_error'
  | 'thread_safe'
  | 'json_schema'
  | 'logit_bias'
  | 'embed';

export interface EngineInitConfig {
  gpuBackend: string;
  /** Folder holding the plugin library and its manifest.json. */
  pluginDir: string;
  vramBudgetBytes?: number;
  deviceIndex?: number;
  threads?: number;
}

export interface ModelLoadParams {
  path: string;
  format: 'gguf' | 'safetensors' | 'onnx';
  contextLength?: number;
  quantization?: string;
  vramBudgetBytes?: number;
  parallel?: number;
}

/**
 * How far a model load has got, as the plugin reports it: `fraction` from 0 to 1 within `phase` (a short word
 * the plugin chooses: "weights", "context"). Plugins without progress report nothing.
 */
export interface LoadProgress {
  phase: string;
  fraction: number;
}

export type LoadProgressListener = (progress: LoadProgress) => void;

export interface LoadedModelInfo {
  contextLength: number;
  vramBytes: number;
  /** Floats in each of the model's embeddings; 0 when it gives none (or its engine has no engine_embed). */
  embeddingLength: number;
}

/** What engine_model_get_stats says of a loaded model. */
export interface ModelStats {
  /** Generations being decoded. */
  running: number;
  /** Generations handed to the engine and waiting for a free sequence. */
  waiting: number;
  /** KV cache cells (token positions) the running generations hold. */
  kvCellsUsed: number;
  /** KV cache cells of the model, all sequences together; 0 when it has none. */
  kvCellsTotal: number;
}

export interface GenerateRequest {
  /** A model loaded with loadModel(); omitted for plugins with only engine_load_model. */
  modelId?: string;
  prompt: string;
  maxTokens?: number;
  temperature?: number;
  topP?: number;
  topK?: number;
  minP?: number;
  presencePenalty?: number;
  frequencyPenalty?: number;
  seed?: number;
  stop?: string[];
  logprobs?: boolean;
  ignoreEos?: boolean;
  addSpecial?: boolean;
  parseSpecial?: boolean;
  /** A JSON Schema (as JSON text) the output must match; only for engines with the `json_schema` capability. */
  jsonSchema?: string;
  /** Added to the logits of these token ids before each token is drawn; only for engines with `logit_bias`. */
  logitBias?: Record<number, number>;
}

export interface EmbedRequest {
  /** A model loaded with loadModel() whose embeddingLength is not 0. */
  modelId: string;
  /** The texts to embed: keep it to a few per call (engine_embed cannot be cancelled). */
  inputs: string[];
  addSpecial?: boolean;
  parseSpecial?: boolean;
}

export interface EmbedResult {
  /** One per input, in order, of the model's embeddingLength floats: as the model gives them, not normalised. */
  embeddings: Float32Array[];
  promptTokens: number;
}

/** One token, reported only when the request asked for logprobs. */
export interface TokenDetail {
  id: number;
  /** The token's own bytes decoded on their own (U+FFFD where they split a character). */
  text: string;
  bytes: number[];
  logprob: number;
}

/** Tokens delivered together: as many as the engine produced since JS last looked. */
export interface TokenChunk {
  /** Text of these tokens, whole characters only (a split character completes in the next chunk). */
  text: string;
  tokenCount: number;
  /**
   * Where each token's piece of `text` ends (UTF-16 offsets, one per token, ascending): token i owns
   * text.slice(pieceEnds[i-1] ?? 0, pieceEnds[i]). A token that completes no character owns an empty
   * piece; the character it started belongs to the token that completes it. Lets a server emit one
   * event per token without a JS object per token.
   */
  pieceEnds: Uint32Array;
  tokens?: TokenDetail[];
}

export type FinishReason = 'stop' | 'length' | 'cancelled';

export interface GenerateResult {
  finishReason: FinishReason;
  promptTokens: number;
  completionTokens: number;
}

/** Iterate for chunks; `result` settles when the generation has ended. Leaving the loop early cancels it. */
export interface Generation extends AsyncIterableIterator<TokenChunk> {
  readonly result: Promise<GenerateResult>;
  /** Text received from the engine and not taken yet, in UTF-16 code units: what a slow consumer holds back. */
  readonly buffered: number;
}

/** Why an engine is gone: closed by its owner, or its host process crashed or was killed as hung. */
export interface EngineExit {
  code: 'closed' | 'engine_crashed' | 'engine_timeout';
  /** What happened, with the host's last stderr lines after a crash. */
  message: string;
  exitCode: number | null;
  signal: NodeJS.Signals | null;
}

/** An opened plugin: in this process (openEngine) or in an engine host process of its own (EngineHost). */
export interface Engine {
  readonly path: string;
  readonly info: EngineInfo;
  readonly capabilities: readonly EngineCapability[];
  init(config: EngineInitConfig): Promise<void>;
  /** `onProgress` hears the plugin's progress reports until the load settles. */
  loadModel(modelId: string, params: ModelLoadParams, onProgress?: LoadProgressListener): Promise<LoadedModelInfo>;
  unloadModel(modelId: string): Promise<void>;
  /** null when the plugin offers no estimate. */
  estimateVram(params: ModelLoadParams): Promise<number | null>;
  /** null when the plugin does not report it. */
  vramUsed(): Promise<number | null>;
  /** null when the plugin does not report it, or cannot say now (engine_model_get_stats). */
  modelStats(modelId: string): Promise<ModelStats | null>;
  generate(request: GenerateRequest, options?: { signal?: AbortSignal }): Generation;
  /** Through engine_embed; `unsupported` when the engine or the model gives no embeddings. */
  embed(request: EmbedRequest): Promise<EmbedResult>;
  shutdown(): Promise<void>;
  /** Cancels generations in flight, waits for them, shuts down if needed, and unloads the library. */
  close(): Promise<void>;
  /** Settles when the engine is gone: after close(), or when its host process died. */
  readonly exited: Promise<EngineExit>;
}

/**
 * Stable string codes of EngineError. The first group maps the plugin's ERR_* return codes; the second
 * is raised by the host while opening or driving a plugin.
 */
export type EngineErrorCode =
  | 'invalid_argument'
  | 'not_initialized'
  | 'model_not_found'
  | 'model_corrupt'
  | 'unsupported'
  | 'out_of_memory'
  | 'context_overflow'
  | 'model_not_loaded'
  | 'internal'
  | 'open_failed'
  | 'missing_symbol'
  | 'abi_mismatch'
  | 'invalid_info'
  | 'id_mismatch'
  | 'plugin_error'
  | 'closed'
  | 'engine_crashed'
  | 'engine_timeout';
