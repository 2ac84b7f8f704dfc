import { createHash } from 'node:crypto';
import { mkdtemp, readFile, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { gguf } from '@huggingface/gguf';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { makeModel } from './make-model.js';

let dir: string;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'make-model-'));
});

afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

async function sha256(path: string): Promise<string> {
  return createHash('sha256')
    .update(await readFile(path))
    .digest('hex');
}

describe('makeModel', () => {
  it('writes a llama GGUF with the Llama 3 tokenizer and chat template', async () => {
    const path = join(dir, 'default.gguf');
    await makeModel(path, { name: 'stand-in' });
    const { metadata, tensorInfos } = await gguf(path, { allowLocalFile: true });
    const kv = metadata as unknown as Record<string, unknown>;
    expect(kv['general.architecture']).toBe('llama');
    expect(kv['general.name']).toBe('stand-in');
    expect(kv['llama.embedding_length']).toBe(64);
    expect(kv['llama.block_count']).toBe(2);
    expect((kv['tokenizer.ggml.tokens'] as string[]).length).toBe(128256);
    expect(kv['tokenizer.ggml.pre']).toBe('llama-bpe');
    expect(kv['tokenizer.chat_template']).toContain('<|start_header_id|>');
    expect(tensorInfos.map((t) => t.name)).toContain('blk.1.ffn_down.weight');
    expect(tensorInfos.find((t) => t.name === 'token_embd.weight')?.shape).toEqual([64n, 128256n]);
  });

  it("copies the vocabulary file's tokenizer entries as they are, once each, a metadata override winning", async () => {
    const vocabulary = new URL('../build/llama.cpp/models/ggml-vocab-llama-bpe.gguf', import.meta.url).pathname;
    const path = join(dir, 'override.gguf');
    await makeModel(path, {}, { metadata: { 'tokenizer.ggml.bos_token_id': 7 } });
    const made = (await gguf(path, { allowLocalFile: true })).metadata as unknown as Record<string, unknown>;
    const source = (await gguf(vocabulary, { allowLocalFile: true })).metadata as unknown as Record<string, unknown>;
    for (const key of Object.keys(source).filter((k) => k.startsWith('tokenizer.') && k !== 'tokenizer.ggml.bos_token_id')) {
      expect(made[key], key).toEqual(source[key]);
    }
    expect(made['tokenizer.ggml.bos_token_id']).toBe(7);
    // version, tensor_count and kv_count aside, every key is counted once in kv_count: none is written twice.
    expect(Number(made.kv_count)).toBe(Object.keys(made).length - 3);
  });

  it('writes the same bytes for the same seed and shape, other bytes for another seed', async () => {
    const shape = { dim: 32, layers: 1, heads: 2, kvHeads: 1, ffn: 64 };
    await makeModel(join(dir, 'a.gguf'), { ...shape, seed: 5 });
    await makeModel(join(dir, 'b.gguf'), { ...shape, seed: 5 });
    await makeModel(join(dir, 'c.gguf'), { ...shape, seed: 6 });
    expect(await sha256(join(dir, 'b.gguf'))).toBe(await sha256(join(dir, 'a.gguf')));
    expect(await sha256(join(dir, 'c.gguf'))).not.toBe(await sha256(join(dir, 'a.gguf')));
  });

  it('writes f32 and q8_0 matrices when asked', async () => {
    const shape = { dim: 32, layers: 1, heads: 2, kvHeads: 1, ffn: 64 };
    await makeModel(join(dir, 'f32.gguf'), { ...shape, type: 'f32' });
    await makeModel(join(dir, 'q8.gguf'), { ...shape, type: 'q8_0' });
    const f32 = (await stat(join(dir, 'f32.gguf'))).size;
    const q8 = (await stat(join(dir, 'q8.gguf'))).size;
    const { tensorInfos } = await gguf(join(dir, 'q8.gguf'), { allowLocalFile: true });
    expect(tensorInfos.find((t) => t.name === 'output.weight')?.dtype).toBe(8); // GGML_TYPE_Q8_0
    expect(f32 - q8).toBeGreaterThan(20_000_000); // 2 x 32 x 128256 values: 4 bytes each against 34/32
  });

  it('refuses a shape llama.cpp could not load', async () => {
    await expect(makeModel(join(dir, 'bad.gguf'), { dim: 64, heads: 5 })).rejects.toThrow(/multiple of heads/);
    await expect(makeModel(join(dir, 'bad.gguf'), { dim: 48, type: 'q8_0' })).rejects.toThrow(/multiples of 32/);
  });
});
