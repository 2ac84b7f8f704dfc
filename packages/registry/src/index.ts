// Errors: the host's one error class and the mapping of engine errors onto it.
export { NodeError, toNodeError } from './errors.js';
export type { NodeErrorInit, NodeErrorType } from './errors.js';

// The registry: discovery, model resolution, VRAM admission, engine and model state.
export { LOAD_STARTING, Registry } from './registry.js';
export type {
  CatalogueEntry,
  LoadModelOptions,
  LoadedModel,
  ModelActivity,
  ModelLease,
  RegistryLogger,
  RegistryOptions,
  VramStatus,
  EngineReload,
} from './types.js';
export type { EngineRecord, EngineStatus, OpenEngine } from './discovery.js';
export type { RestartPolicy } from './engine-supervisor.js';

// What a model lease generates, as the engines produce it.
export type {
  GenerateRequest,
  GenerateResult,
  Generation,
  LoadProgress,
  LoadProgressListener,
  TokenChunk,
  TokenDetail,
} from '@llm-node/abi-native';

// Models: what a model's files say.
export type { ModelInfo } from './model-info.js';
