import { mkdir, mkdtemp, readFile, rm, stat, truncate, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { locateModel } from './model-files.js';
import { modelInfoReader, readModelInfo } from './model-info.js';
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
      await writeGgufModel(join(models, 'big', `big-Q8_0-0000${shard}-of-00002.gguf`), {
        architecture: 'llama',
        tensorDataBytes: 1000 * shard,
      });
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

  // Hyperparameters llama.cpp's loader asserts on (and so would abort its process): refused before any engine
  // sees them, naming the key.
  it.each([
    ['no layers', { 'llama.block_count': 0 }, 'llama.block_count is 0; a model has 1 to 512 layers'],
    ['513 layers', { 'llama.block_count': 513 }, 'llama.block_count is 513; a model has 1 to 512 layers'],
    ['2^32-1 layers', { 'llama.block_count': 2 ** 32 - 1 }, 'llama.block_count is 4294967295'],
    [
      'experts used without experts',
      { 'llama.expert_used_count': 2 },
      'llama.expert_used_count is 2 but the model has no llama.expert_count',
    ],
    ['experts without any used', { 'llama.expert_count': 8 }, 'llama.expert_count is 8 but llama.expert_used_count is 0 or missing'],
    [
      'more experts used than there are',
      { 'llama.expert_count': 4, 'llama.expert_used_count': 8 },
      'llama.expert_used_count is 8, more than the 4 experts',
    ],
    [
      'too many experts',
      { 'llama.expert_count': 2048, 'llama.expert_used_count': 2 },
      'llama.expert_count is 2048; llama.cpp supports at most 1024',
    ],
    [
      'a per-layer list of another length',
      { 'llama.block_count': 2, 'llama.attention.head_count': [4, 4, 4] },
      'llama.attention.head_count lists 3 layers; llama.block_count says 2',
    ],
    [
      'more prediction layers than layers',
      { 'llama.block_count': 2, 'llama.nextn_predict_layers': 3 },
      'llama.nextn_predict_layers is 3, more than the 2 layers',
    ],
    ['a zero context length', { 'llama.context_length': 0 }, 'llama.context_length must be an integer from 1'],
    ['a text where a count belongs', { 'llama.block_count': 'many' }, 'llama.block_count must be one integer'],
  ])('refuses a GGUF with %s as model_corrupt (422), naming the key', async (_name, metadata, message) => {
    await writeGgufModel(join(models, 'bad.gguf'), { architecture: 'llama', metadata });
    await expect(info('bad')).rejects.toMatchObject({ code: 'model_corrupt', status: 422, message: expect.stringContaining(message) });
  });

  it('accepts per-layer lists and mixture-of-experts shapes that are whole', async () => {
    await writeGgufModel(join(models, 'moe.gguf'), {
      architecture: 'llama',
      metadata: { 'llama.block_count': 2, 'llama.attention.head_count_kv': [2, 4], 'llama.expert_count': 8, 'llama.expert_used_count': 2 },
    });
    await expect(info('moe')).resolves.toMatchObject({ blockCount: 2, headCountKv: 4 });
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
      'tokenizer_config.json': JSON.stringify({
        chat_template: [
          { name: 'tool_use', template: 'T' },
          { name: 'default', template: 'D' },
        ],
      }),
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

describe('readModelInfo for onnx', () => {
  const onnx = async (files: Record<string, string>) => {
    await mkdir(join(models, 'ox'), { recursive: true });
    for (const [name, text] of Object.entries(files)) await writeFile(join(models, 'ox', name), text);
    return readModelInfo(await locateModel(models, parseModelRef('ox'), 'onnx'));
  };

  it("reads config.json as for safetensors, counting the graph's external data as weights", async () => {
    const config = JSON.stringify({ model_type: 'llama', num_hidden_layers: 2, max_position_embeddings: 8192 });
    expect(await onnx({ 'config.json': config, 'model.onnx': 'x'.repeat(100), 'model.onnx.data': 'x'.repeat(900) })).toMatchObject({
      format: 'onnx',
      architecture: 'llama',
      blockCount: 2,
      trainedContextLength: 8192,
      weightsBytes: 1000,
    });
  });

  it("reads ONNX Runtime GenAI's genai_config.json when there is no config.json", async () => {
    const genai = {
      model: {
        type: 'phi3',
        context_length: 4096,
        vocab_size: 32064,
        decoder: { num_hidden_layers: 32, hidden_size: 3072, num_attention_heads: 32, num_key_value_heads: 32, head_size: 96 },
      },
    };
    expect(await onnx({ 'genai_config.json': JSON.stringify(genai), 'model.onnx': '' })).toMatchObject({
      format: 'onnx',
      architecture: 'phi3',
      trainedContextLength: 4096,
      blockCount: 32,
      headCountKv: 32,
      keyLength: 96,
      vocabSize: 32064,
    });
  });

  it('refuses a folder with neither', async () => {
    await expect(onnx({ 'model.onnx': '' })).rejects.toMatchObject({
      code: 'invalid_model',
      message: expect.stringContaining('config.json or genai_config.json is missing'),
    });
  });
});

describe('modelInfoReader', () => {
  it('reads a model once while its file stays the same, and again once it changed', async () => {
    const path = join(models, 'cached.gguf');
    await writeGgufModel(path, { architecture: 'llama', name: 'first' });
    const read = modelInfoReader();
    const candidate = await locateModel(models, parseModelRef('cached'));
    const first = await read(candidate);
    expect(first.name).toBe('first');
    expect(await read(candidate)).toBe(first);
    await writeGgufModel(path, { architecture: 'llama', name: 'second, longer' });
    expect((await read(candidate)).name).toBe('second, longer');
  });
});
