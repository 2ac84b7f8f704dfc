import { describe, expect, it } from 'vitest';
import type { ModelInfo } from './model-info.js';
import { COMPUTE_MARGIN_BYTES, estimateModelVram } from './vram.js';

// Llama 3.2 1B's shape, with about 770 MiB of Q4_K_M tensor data.
const llama32_1b: ModelInfo = {
  format: 'gguf',
  architecture: 'llama',
  name: 'Llama 3.2 1B Instruct',
  quantization: 'Q4_K_M',
  trainedContextLength: 131072,
  blockCount: 16,
  embeddingLength: 2048,
  headCount: 32,
  headCountKv: 8,
  keyLength: 64,
  valueLength: 64,
  vocabSize: 128256,
  weightsBytes: 807_690_240,
  chatTemplate: null,
  bosToken: '<|begin_of_text|>',
  eosToken: '<|eot_id|>',
  addBosToken: true,
};

describe('estimateModelVram', () => {
  it('adds weights, an f16 KV cache for every sequence, and the logits buffer plus a margin', () => {
    const estimate = estimateModelVram(llama32_1b, { contextLength: 4096, parallel: 1 });
    // 16 layers x 4096 tokens x 8 kv heads x (64 + 64) x 2 bytes = 128 MiB.
    expect(estimate.kvCacheBytes).toBe(134_217_728);
    expect(estimate.computeBytes).toBe(128256 * 512 * 4 + COMPUTE_MARGIN_BYTES);
    expect(estimate.weightsBytes).toBe(807_690_240);
    expect(estimate.totalBytes).toBe(estimate.weightsBytes + estimate.kvCacheBytes + estimate.computeBytes);
  });

  it('gives each parallel sequence its own KV cache', () => {
    const one = estimateModelVram(llama32_1b, { contextLength: 2048, parallel: 1 });
    const four = estimateModelVram(llama32_1b, { contextLength: 2048, parallel: 4 });
    expect(four.kvCacheBytes).toBe(4 * one.kvCacheBytes);
  });

  it('derives the head width from the embedding when the model does not state it', () => {
    const implicit = { ...llama32_1b, keyLength: null, valueLength: null };
    expect(estimateModelVram(implicit, { contextLength: 4096, parallel: 1 }).kvCacheBytes).toBe(134_217_728);
  });

  it('counts missing shape fields as zero rather than failing', () => {
    const bare = {
      ...llama32_1b,
      blockCount: null,
      headCount: null,
      headCountKv: null,
      keyLength: null,
      valueLength: null,
      embeddingLength: null,
      vocabSize: null,
      weightsBytes: 0,
    };
    expect(estimateModelVram(bare, { contextLength: 4096, parallel: 1 })).toEqual({
      weightsBytes: 0,
      kvCacheBytes: 0,
      computeBytes: COMPUTE_MARGIN_BYTES,
      totalBytes: COMPUTE_MARGIN_BYTES,
    });
  });
});
