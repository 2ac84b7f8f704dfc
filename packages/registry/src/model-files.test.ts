import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { findModelCandidates, locateModel } from './model-files.js';
import { parseModelRef } from './model-ref.js';

let models: string;
beforeEach(async () => {
  models = await mkdtemp(join(tmpdir(), 'registry-models-'));
});
afterEach(async () => {
  await rm(models, { recursive: true, force: true });
});

async function touch(...parts: string[]): Promise<string> {
  const path = join(models, ...parts);
  await mkdir(join(path, '..'), { recursive: true });
  await writeFile(path, '');
  return path;
}

const locate = (id: string, format?: 'gguf' | 'safetensors' | 'onnx') => locateModel(models, parseModelRef(id), format);

describe('locateModel', () => {
  it('finds <models>/<id>.gguf and reads the quantization from its name', async () => {
    const path = await touch('llama-3.2-1b-Q4_K_M.gguf');
    await expect(locate('llama-3.2-1b-Q4_K_M')).resolves.toMatchObject({ format: 'gguf', quantization: 'Q4_K_M', path, files: [path] });
  });

  it('finds the single GGUF in <models>/<id>/', async () => {
    const path = await touch('llama', 'Llama-3.2-1B-Instruct-Q8_0.gguf');
    await expect(locate('llama')).resolves.toMatchObject({ format: 'gguf', quantization: 'Q8_0', path });
  });

  it('selects a quantization by exact label and lists the candidates when none is named', async () => {
    await touch('llama', 'llama-Q4_K_M.gguf');
    const q8 = await touch('llama', 'llama-Q8_0.gguf');
    await expect(locate('llama:Q8_0')).resolves.toMatchObject({ path: q8, quantization: 'Q8_0' });
    await expect(locate('llama')).rejects.toMatchObject({
      code: 'ambiguous_model',
      status: 400,
      message: "Model 'llama' has several candidates; name one: llama:Q4_K_M, llama:Q8_0",
    });
  });

  it('answers an unknown quantization with model_not_found listing what exists', async () => {
    await touch('llama', 'llama-Q4_K_M.gguf');
    await expect(locate('llama:Q2_K')).rejects.toMatchObject({
      code: 'model_not_found',
      status: 404,
      message: "Model 'llama' has no quantization 'Q2_K'; available: llama:Q4_K_M",
    });
  });

  it('matches the quantization label exactly, case included', async () => {
    await touch('llama', 'llama-Q4_K_M.gguf');
    await expect(locate('llama:q4_k_m')).rejects.toMatchObject({ code: 'model_not_found' });
  });

  it('counts a complete shard set as one model opened through its first shard', async () => {
    const first = await touch('big', 'big-Q4_K_M-00001-of-00003.gguf');
    await touch('big', 'big-Q4_K_M-00002-of-00003.gguf');
    await touch('big', 'big-Q4_K_M-00003-of-00003.gguf');
    const found = await locate('big');
    expect(found).toMatchObject({ path: first, quantization: 'Q4_K_M' });
    expect(found.files).toHaveLength(3);
  });

  it('refuses an incomplete shard set, naming the missing shard', async () => {
    await touch('big', 'big-Q4_K_M-00001-of-00002.gguf');
    await expect(locate('big')).rejects.toMatchObject({
      code: 'model_corrupt',
      message: "Model 'big' is an incomplete shard set: missing big-Q4_K_M-00002-of-00002.gguf",
    });
  });

  it('finds safetensors beside a config.json', async () => {
    await touch('qwen', 'config.json');
    const weights = await touch('qwen', 'model.safetensors');
    await expect(locate('qwen')).resolves.toMatchObject({ format: 'safetensors', path: join(models, 'qwen'), files: [weights] });
  });

  it('finds an ONNX export by its model.onnx, with its external data', async () => {
    const graph = await touch('phi', 'model.onnx');
    const data = await touch('phi', 'model.onnx.data');
    await touch('phi', 'genai_config.json');
    await expect(locate('phi')).resolves.toMatchObject({
      format: 'onnx',
      path: join(models, 'phi'),
      files: [graph, data],
      label: 'phi (onnx)',
    });
  });

  it('passes over safetensors without a config.json and vision projectors', async () => {
    await touch('odd', 'model.safetensors');
    await touch('odd', 'mmproj-model-f16.gguf');
    await expect(locate('odd')).rejects.toMatchObject({ code: 'model_not_found' });
  });

  it('picks by format when a folder holds both, and says format_mismatch when the format is absent', async () => {
    await touch('both', 'config.json');
    await touch('both', 'model.safetensors');
    await touch('both', 'both-F16.gguf');
    await expect(locate('both')).rejects.toMatchObject({ code: 'ambiguous_model' });
    await expect(locate('both', 'safetensors')).resolves.toMatchObject({ format: 'safetensors' });
    await touch('only', 'only-Q4_0.gguf');
    await expect(locate('only', 'safetensors')).rejects.toMatchObject({
      code: 'format_mismatch',
      status: 400,
      message: "Model 'only' is gguf, not safetensors",
    });
  });

  it('names files when two candidates share a label', async () => {
    await touch('twins', 'a-Q4_0.gguf');
    await touch('twins', 'b-Q4_0.gguf');
    await expect(locate('twins:Q4_0')).rejects.toMatchObject({ message: expect.stringContaining('a-Q4_0.gguf, b-Q4_0.gguf') });
  });

  it('answers a missing model, or a missing models folder, with a 404 model_not_found', async () => {
    await expect(locate('nothing')).rejects.toMatchObject({ code: 'model_not_found', type: 'not_found_error', status: 404 });
    await expect(locateModel(join(models, 'absent'), parseModelRef('x'))).rejects.toMatchObject({ code: 'model_not_found' });
  });
});

describe.skipIf(process.platform === 'win32')('files that are not regular files', () => {
  it('passes over a FIFO named like a model, and a link to one in a model folder, instead of reading it', async () => {
    const { execFileSync } = await import('node:child_process');
    const { symlink } = await import('node:fs/promises');
    execFileSync('mkfifo', [join(models, 'fifo.gguf')]);
    await mkdir(join(models, 'linked'));
    await symlink(join(models, 'fifo.gguf'), join(models, 'linked', 'model.gguf'));
    await expect(findModelCandidates(models, 'fifo')).resolves.toEqual([]);
    await expect(findModelCandidates(models, 'linked')).resolves.toEqual([]);
  });
});
