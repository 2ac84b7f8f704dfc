// The onnx engine's model maker: small ONNX decoder folders with random weights and the Llama 3 tokenizer.
export { DEFAULT_ONNX_SHAPE, LLAMA3_VOCABULARY, makeOnnxModel } from './make-model.js';
export type { OnnxModelShape } from './make-model.js';
