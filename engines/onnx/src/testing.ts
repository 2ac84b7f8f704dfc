// What other packages' tests and the benchmark use to check the plugin: where it is built, the reference decoder
// over onnxruntime-node (a dev dependency: this entry point is for the workspace, not for installs), token
// lookups in a model folder's tokenizer.json, and a graph the engine refuses.
export { builtPluginDir, ENGINE_DIR } from './built-plugin.js';
export { graphWithoutCache } from './graph-without-cache.js';
export { openReference } from './reference.js';
export type { ReferenceDecoder } from './reference.js';
export { llama3ChatPieces, readTokenText } from './token-text.js';
export type { TokenText } from './token-text.js';
