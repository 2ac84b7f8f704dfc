// Opening and driving engine plugins.
export { ENGINE_ABI_VERSION, openEngine } from './engine.js';
export { EngineHost } from './engine-host.js';
export type { EngineHostOptions, EngineHostTimeouts } from './engine-host.js';
export { EngineError } from './errors.js';

// The contract shared with the registry, the server and the engines.
export type {
  EmbedRequest,
  EmbedResult,
  Engine,
  EngineCapability,
  EngineErrorCode,
  EngineExit,
  EngineInfo,
  EngineInitConfig,
  FinishReason,
  GenerateRequest,
  GenerateResult,
  Generation,
  LoadedModelInfo,
  LoadProgress,
  LoadProgressListener,
  ModelLoadParams,
  ModelStats,
  TokenChunk,
  TokenDetail,
} from './types.js';
