// Parsing and validation
export { parseManifest, readManifest } from './parse.js';
export { MODEL_FORMATS } from './schema.js';

// Types
export type { EngineManifest, ManifestResult, ModelFormat, Modality } from './types.js';

// The JSON Schema itself ships as a file: import or point "$schema" at '@llm-node/manifest/schema.json'.
