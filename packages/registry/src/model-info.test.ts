import { mkdir, mkdtemp, readFile, rm, stat, truncate, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { locateModel } from './model-files.js';
import { readModelInfo } from './model-info.js';
import { parseModelRef } from './model-ref.js';
import { writeGgufModel } from './testing/index.js';

let models: string;
beforeEach(async () => {
  models = await mkdtemp(join(tmpdir(), 'registry-info-'));
});
afterEach(async () => {
  await rm(models, { recursive: true, force: true });
});

const info = async (id: string) => readModelInfo(await locateModel(models, parseModelRef(id)));

describe('readModelInfo for GGUF', () => {
  it('reads the architecture, shape, chat template and special tokens from the header', async () => {
    await writeGgufModel(join(models, 'tiny-Q4_K_M.gguf'), {
      architecture: 'llama',
      name: 'Tiny',
      chatTemplate: '{{ bos_token }}{% for m in messages %}{{ m.content }}{% endfor %}',
      tokens: ['<unk>', '<|begin|>', '<|end|>', 'a'],
      bosTokenId: 1,
      eosTokenId: 2,
      contextLength: 8192,
      blockCount: 16,
      embeddingLength: 2048,
      headCount: 32,
      headCountKv: 8,
      tensorDataBytes: 1_000_000,
    });
    expect(await info('tiny-Q4_K_M')).toEqual({
      format: 'gguf',
      architecture: 'llama',
      name: 'Tiny',
      quantization: 'Q4_K_M',
      trainedContextLength: 8192,
      blockCount: 16,
      embeddingLength: 2048,
      headCount: 32,
      headCountKv: 8,
      keyLength: null,
      valueLength: null,
      vocabSize: 4,
      weightsBytes: 1_000_000,
      chatTemplate: '{{ bos_token }}{% for m in messages %}{{ m.content }}{% endfor %}',
      bosToken: '<|begin|>',
      eosToken: '<|end|>',
      addBosToken: null,
    });
  });

  it('adds up the tensor data of every shard', async () => {
    for (const shard of [1, 2]) {
      await writeGgufModel(join(models, 'big', `big-Q8_0-0000${shard}-of-00002.gguf`), { architecture: 'llama', tensorDataBytes: 1000 * shard });
    }
    expect((await info('big')).weightsBytes).toBe(3000);
  });

  it('reports a truncated header as model_corrupt', async () => {
    const path = join(models, 'cut.gguf');
    await writeGgufModel(path, { architecture: 'llama', chatTemplate: 'x'.repeat(500) });
    await truncate(path, (await stat(path)).size - 100);
    await expect(info('cut')).rejects.toMatchObject({ code: 'model_corrupt', status: 422, message: expect.stringContaining('truncated') });
  });

  it.each([
    ['garbage', Buffer.from('this is not a model at all')],
    ['empty', Buffer.alloc(0)],
    ['a bad version', Buffer.from([0x47, 0x47, 0x55, 0x46, 9, 0, 0, 0])],
  ])('reports %s as model_corrupt', async (_, bytes) => {
    await writeFile(join(models, 'bad.gguf'), bytes);
    await expect(info('bad')).rejects.toMatchObject({ code: 'model_corrupt', type: 'invalid_request_error' });
  });

  it('refuses a GGUF without general.architecture as invalid_model', async () => {
    const path = join(models, 'noarch.gguf');
    await writeGgufModel(path, { architecture: 'llama' });
    // Rename the key in place (same length) so the header stays valid.
    const bytes = await readFile(path);
    bytes.write('general.xrchitecture', bytes.indexOf('general.architecture'));
    await writeFile(path, bytes);
    await expect(info('noarch')).rejects.toMatchObject({ code: 'invalid_model', message: expect.stringContaining('general.architecture') });
  });
});

describe('readModelInfo for safetensors', () => {
  async function folder(files: Record<string, string>) {
    await mkdir(join(models, 'st'), { recursive: true });
    for (const [name, text] of Object.entries(files)) await writeFile(join(models, 'st', name), text);
  }

  it('reads config.json and tokenizer_config.json', async () => {
    await folder({
      'config.json': JSON.stringify({
        model_type: 'qwen2',
        architectures: ['Qwen2ForCausalLM'],
        max_position_embeddings: 32768,
        num_hidden_layers: 24,
        hidden_size: 896,
        num_attention_heads: 14,
        num_key_value_heads: 2,
        vocab_size: 151936,
      }),
      'tokenizer_config.json': JSON.stringify({
        chat_template: '{{ messages }}',
        bos_token: null,
        eos_token: { content: '<|im_end|>', lstrip: false },
        add_bos_token: false,
      }),
      'model.safetensors': 'x'.repeat(1234),
    });
    expect(await info('st')).toMatchObject({
      format: 'safetensors',
      architecture: 'qwen2',
      trainedContextLength: 32768,
      blockCount: 24,
      embeddingLength: 896,
      headCount: 14,
      headCountKv: 2,
      vocabSize: 151936,
      weightsBytes: 1234,
      chatTemplate: '{{ messages }}',
      bosToken: null,
      eosToken: '<|im_end|>',
      addBosToken: false,
    });
  });

  it('falls back to architectures[0], named templates and chat_template.jinja', async () => {
    await folder({
      'config.json': JSON.stringify({ architectures: ['MyForCausalLM'] }),
      'tokenizer_config.json': JSON.stringify({ chat_template: [{ name: 'tool_use', template: 'T' }, { name: 'default', template: 'D' }] }),
      'model.safetensors': '',
    });
    expect(await info('st')).toMatchObject({ architecture: 'MyForCausalLM', chatTemplate: 'D' });
    await folder({ 'tokenizer_config.json': '{}', 'chat_template.jinja': 'J' });
    expect((await info('st')).chatTemplate).toBe('J');
  });

  it.each([
    ['config.json that is not JSON', { 'config.json': '{nope' }, 'not valid JSON'],
    ['config.json that is an array', { 'config.json': '[]' }, 'JSON object'],
    ['config.json without model_type or architectures', { 'config.json': '{}' }, 'no model_type'],
  ])('refuses a %s as invalid_model', async (_, files, reason) => {
    await folder({ ...files, 'model.safetensors': '' });
    await expect(info('st')).rejects.toMatchObject({ code: 'invalid_model', status: 422, message: expect.stringContaining(reason) });
  });
});
