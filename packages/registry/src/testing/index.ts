export { writeGgufModel } from './write-gguf-model.js';
export type { GgufModelOptions } from './write-gguf-model.js';
