import { mkdtemp, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { beforeAll, describe, expect, test } from 'vitest';
import { EngineError, openEngine } from './index.js';
import type { Engine } from './index.js';
import { buildTestPlugin } from './testing/index.js';

let models: string;
let modelPath: string;

beforeAll(async () => {
  models = await mkdtemp(join(tmpdir(), 'llm-node-abi-models-'));
  modelPath = join(models, 'tiny.gguf');
  await writeFile(modelPath, Buffer.alloc(1000));
});

async function rejection(promise: Promise<unknown>): Promise<EngineError> {
  const error = await promise.then(
    () => expect.fail('expected a rejection'),
    (e: unknown) => e,
  );
  expect(error).toBeInstanceOf(EngineError);
  return error as EngineError;
}

async function openEcho(): Promise<Engine> {
  const engine = openEngine(await buildTestPlugin('echo'));
  await engine.init({ gpuBackend: 'cpu', pluginDir: tmpdir() });
  return engine;
}

describe('engine lifecycle and errors', () => {
  test("surfaces engine_init's failure with the plugin's code and message, and unloads the plugin", async () => {
    const engine = openEngine(await buildTestPlugin('failing'));
    const error = await rejection(engine.init({ gpuBackend: 'cpu', pluginDir: tmpdir(), deviceIndex: 7 }));
    expect(error.code).toBe('unsupported');
    expect(error.engineCode).toBe(5);
    expect(error.message).toBe('device 7 does not exist: this engine drives only device 0');
    expect((await rejection(engine.loadModel('m', { path: modelPath, format: 'gguf' }))).code).toBe('closed');
    await engine.close();
  });

  test("surfaces a model load's failure with the plugin's message", async () => {
    const engine = openEngine(await buildTestPlugin('failing'));
    await engine.init({ gpuBackend: 'cpu', pluginDir: tmpdir() });
    const error = await rejection(engine.loadModel('tiny', { path: modelPath, format: 'gguf' }));
    expect(error.code).toBe('model_corrupt');
    expect(error.message).toBe(`${modelPath}: not a model file (bad magic) for model 'tiny'`);
    await engine.close();
  });

  test('says which call failed with which code when the plugin gives no message', async () => {
    const engine = openEngine(await buildTestPlugin('legacy'));
    await engine.init({ gpuBackend: 'cpu', pluginDir: tmpdir() });
    const error = await rejection(engine.loadModel('m', { path: join(models, 'missing.gguf'), format: 'gguf' }));
    expect(error.code).toBe('model_not_found');
    expect(error.message).toBe('engine_load_model failed with ERR_MODEL_NOT_FOUND (3)');
    await engine.close();
  });

  test('loads, estimates, reports and unloads models by id', async () => {
    const engine = await openEcho();
    expect(await engine.estimateVram({ path: modelPath, format: 'gguf' })).toBe(1000);
    expect(await engine.loadModel('a', { path: modelPath, format: 'gguf', contextLength: 512 })).toEqual({
      contextLength: 512,
      vramBytes: 1000,
      embeddingLength: 8,
    });
    expect(await engine.loadModel('b', { path: modelPath, format: 'gguf' })).toEqual({
      contextLength: 4096,
      vramBytes: 1000,
      embeddingLength: 8,
    });
    await expect(engine.vramUsed()).resolves.toBe(2000);
    expect((await rejection(engine.loadModel('a', { path: modelPath, format: 'gguf' }))).message).toBe("model 'a' is already loaded");
    await engine.unloadModel('a');
    await expect(engine.vramUsed()).resolves.toBe(1000);
    const error = await rejection(engine.loadModel('big', { path: modelPath, format: 'gguf', vramBudgetBytes: 10 }));
    expect(error.code).toBe('out_of_memory');
    expect((await rejection(engine.unloadModel('a'))).code).toBe('invalid_argument');
    await engine.close();
  });

  test("reports a model's running generations and the KV cells they hold (engine_model_get_stats)", async () => {
    const engine = openEngine(await buildTestPlugin('echo', { defines: { ECHO_TOKEN_DELAY_US: 20_000 } }));
    await engine.init({ gpuBackend: 'cpu', pluginDir: tmpdir() });
    await engine.loadModel('a', { path: modelPath, format: 'gguf', contextLength: 100, parallel: 2 });
    expect(await engine.modelStats('a')).toEqual({ running: 0, waiting: 0, kvCellsUsed: 0, kvCellsTotal: 200 });
    const generation = engine.generate({ modelId: 'a', prompt: 'one two three', ignoreEos: true, maxTokens: 50 });
    let received = 0;
    while (received < 5) received += (await generation.next()).value!.tokenCount;
    const stats = (await engine.modelStats('a'))!;
    expect(stats.running).toBe(1);
    // The prompt's 3 cells and one per token emitted, some of which may not have reached JS yet.
    expect(stats.kvCellsUsed).toBeGreaterThanOrEqual(3 + received);
    expect(stats.kvCellsUsed).toBeLessThanOrEqual(3 + received + 2);
    await generation.return!();
    await generation.result;
    expect(await engine.modelStats('a')).toEqual({ running: 0, waiting: 0, kvCellsUsed: 0, kvCellsTotal: 200 });
    expect(await engine.modelStats('not-loaded')).toBeNull();
    await engine.close();
  });

  test('answers null for what a plugin cannot tell', async () => {
    const engine = openEngine(await buildTestPlugin('legacy'));
    await engine.init({ gpuBackend: 'cpu', pluginDir: tmpdir() });
    expect(await engine.estimateVram({ path: modelPath, format: 'gguf' })).toBeNull();
    await expect(engine.vramUsed()).resolves.toBeNull();
    await engine.loadModel('m', { path: modelPath, format: 'gguf' });
    await expect(engine.modelStats('m')).resolves.toBeNull();
    await engine.close();
  });

  test('maps loadModel to engine_load_model for a plugin without engine_model_load, one model at a time', async () => {
    const engine = openEngine(await buildTestPlugin('legacy'));
    await engine.init({ gpuBackend: 'cpu', pluginDir: tmpdir() });
    expect(await engine.loadModel('first', { path: modelPath, format: 'gguf', contextLength: 256 })).toEqual({
      contextLength: 256,
      vramBytes: 0,
      embeddingLength: 0,
    });
    const error = await rejection(engine.loadModel('second', { path: modelPath, format: 'gguf' }));
    expect(error.code).toBe('unsupported');
    expect(error.message).toMatch(/unload 'first' first/);
    await engine.unloadModel('first');
    await engine.loadModel('second', { path: modelPath, format: 'gguf' });
    expect((await rejection(engine.generate({ modelId: 'first', prompt: 'x' }).result)).code).toBe('model_not_loaded');
    await engine.close();
  });

  test('refuses calls before init, after shutdown and after close', async () => {
    const engine = openEngine(await buildTestPlugin('echo'));
    expect((await rejection(engine.loadModel('a', { path: modelPath, format: 'gguf' }))).code).toBe('not_initialized');
    expect((await rejection(engine.generate({ prompt: 'x' }).result)).code).toBe('not_initialized');
    await engine.init({ gpuBackend: 'cpu', pluginDir: tmpdir() });
    expect((await rejection(engine.init({ gpuBackend: 'cpu', pluginDir: tmpdir() }))).code).toBe('invalid_argument');
    await engine.shutdown();
    await engine.shutdown();
    expect((await rejection(engine.loadModel('a', { path: modelPath, format: 'gguf' }))).code).toBe('not_initialized');
    await engine.close();
    await engine.close();
    expect((await rejection(engine.loadModel('a', { path: modelPath, format: 'gguf' }))).code).toBe('closed');
    expect((await rejection(engine.shutdown())).code).toBe('closed');
    await expect(engine.vramUsed()).rejects.toMatchObject({ code: 'closed' });
    const generation = engine.generate({ prompt: 'x' });
    await expect(generation.next()).rejects.toMatchObject({ code: 'closed' });
    expect((await rejection(generation.result)).code).toBe('closed');
  });

  test('checks arguments before they reach the plugin, naming the bad one', async () => {
    const engine = await openEcho();
    const cases: [Promise<unknown>, RegExp][] = [
      [engine.loadModel('', { path: modelPath, format: 'gguf' }), /^modelId must be a non-empty string/],
      [engine.loadModel('a', { path: modelPath, format: 'ggml' as never }), /^format must be 'gguf', 'safetensors' or 'onnx', got "ggml"/],
      [engine.loadModel('a', { path: modelPath, format: 'gguf', contextLength: -1 }), /^contextLength must be an integer/],
      [engine.loadModel('a', { path: 'a\0b', format: 'gguf' }), /^path must be a non-empty string without NUL/],
      [engine.generate({ modelId: 'a', prompt: 'x', temperature: Number.NaN }).result, /^temperature must be a number/],
      [engine.generate({ modelId: 'a', prompt: 'x', maxTokens: 1.5 }).result, /^maxTokens must be an integer/],
      [engine.generate({ modelId: 'a', prompt: 'x', stop: [''] }).result, /^stop\[0\] must be a non-empty string/],
      [engine.generate({ modelId: 'a', prompt: 42 as never }).result, /^prompt must be a string/],
    ];
    for (const [promise, message] of cases) {
      const error = await rejection(promise);
      expect(error.code).toBe('invalid_argument');
      expect(error.message).toMatch(message);
    }
    const init = openEngine(await buildTestPlugin('echo'));
    expect((await rejection(init.init({ gpuBackend: 'cpu', pluginDir: 'relative/dir' }))).message).toMatch(
      /^pluginDir must be an absolute path/,
    );
    await init.close();
    await engine.close();
  });
});
