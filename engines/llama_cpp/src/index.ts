// The model maker: small GGUF models with random weights and the real Llama 3 tokenizer, for tests and demos.
export { makeModel, DEFAULT_SHAPE, mulberry32 } from './make-model.js';
export type { MakeModelOptions, ModelShape } from './make-model.js';
export type { TensorType } from './gguf-file.js';

// Which plugin folders (gpu backends) each platform builds, and from which prebuilt llama.cpp.
export { PLATFORM_RUNTIMES } from './prebuilt.js';
