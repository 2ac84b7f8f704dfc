// Opening and driving engine plugins.
export { ENGINE_ABI_VERSION, openEngine } from './engine.js';
export { EngineError } from './errors.js';

// The contract shared with the registry, the server and the engines.
export type {
  Engine,
  EngineCapability,
  EngineErrorCode,
  EngineInfo,
  EngineInitConfig,
  FinishReason,
  GenerateRequest,
  GenerateResult,
  Generation,
  LoadedModelInfo,
  ModelLoadParams,
  TokenChunk,
  TokenDetail,
} from './types.js';
