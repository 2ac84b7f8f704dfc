import type { ModelInfo } from './model-info.js';

/** The parts of a model's device memory, as the host estimates them before loading it. */
export interface VramEstimate {
  weightsBytes: number;
  kvCacheBytes: number;
  computeBytes: number;
  totalBytes: number;
}

export interface VramEstimateParams {
  /** Tokens of context per sequence. */
  contextLength: number;
  /** Sequences generated at once; each has its own KV cache. */
  parallel: number;
}

/** llama.cpp's default physical batch (n_ubatch): the logits of this many tokens are held at once. */
const LOGITS_BATCH_TOKENS = 512;
/** Scratch beyond the logits (attention, activations) that llama.cpp's compute buffers take. */
export const COMPUTE_MARGIN_BYTES = 128 * 1024 * 1024;
const F16_BYTES = 2;
const F32_BYTES = 4;

/**
 * The host's VRAM formula, used when the engine offers no estimate of its own (see the README):
 *   weights  = tensor data bytes
 *   KV cache = layers × context × parallel × kv_heads × (key_width + value_width) × 2 bytes (f16)
 *   compute  = vocab × 512 × 4 bytes (f32 logits of one batch) + 128 MiB
 * A shape field the model does not state counts as 0.
 */
export function estimateModelVram(info: ModelInfo, params: VramEstimateParams): VramEstimate {
  const headWidth = info.embeddingLength !== null && info.headCount ? info.embeddingLength / info.headCount : 0;
  const keyWidth = info.keyLength ?? headWidth;
  const valueWidth = info.valueLength ?? headWidth;
  const kvCacheBytes =
    (info.blockCount ?? 0) * params.contextLength * params.parallel * (info.headCountKv ?? 0) * (keyWidth + valueWidth) * F16_BYTES;
  const computeBytes = (info.vocabSize ?? 0) * LOGITS_BATCH_TOKENS * F32_BYTES + COMPUTE_MARGIN_BYTES;
  const weightsBytes = info.weightsBytes;
  return { weightsBytes, kvCacheBytes, computeBytes, totalBytes: weightsBytes + kvCacheBytes + computeBytes };
}
