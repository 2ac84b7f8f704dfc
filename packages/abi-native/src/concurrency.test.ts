import { mkdtemp, readFile, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { beforeAll, describe, expect, test } from 'vitest';
import { openEngine } from './index.js';
import type { Engine, Generation } from './index.js';
import { buildTestPlugin } from './testing/index.js';

let modelPath: string;

beforeAll(async () => {
  modelPath = join(await mkdtemp(join(tmpdir(), 'llm-node-abi-models-')), 'tiny.gguf');
  await writeFile(modelPath, Buffer.alloc(100));
});

async function openReady(defines: Record<string, number> = {}, plugin: 'echo' | 'unsafe' = 'echo'): Promise<Engine> {
  const engine = openEngine(await buildTestPlugin(plugin, { defines }));
  await engine.init({ gpuBackend: 'cpu', pluginDir: tmpdir() });
  await engine.loadModel('m', { path: modelPath, format: 'gguf', contextLength: 100_000 });
  return engine;
}

async function text(generation: Generation): Promise<string> {
  let all = '';
  for await (const chunk of generation) all += chunk.text;
  return all;
}

describe('generations at once', () => {
  test('40 generations at once on one engine each get their own tokens', async () => {
    const engine = await openReady();
    const generations = Array.from({ length: 40 }, (_, i) =>
      engine.generate({ modelId: 'm', prompt: `g${i} a b`, ignoreEos: true, maxTokens: 500 }),
    );
    const texts = await Promise.all(generations.map(text));
    const counters = Array.from({ length: 497 }, (_, i) => ` ${i + 4}`).join('');
    expect(texts).toEqual(texts.map((_, i) => `g${i} a b${counters}`));
    for (const generation of generations) expect((await generation.result).finishReason).toBe('length');
    await engine.close();
  });

  test('serialises every call into a plugin that is not thread-safe', async () => {
    const engine = await openReady({}, 'unsafe');
    expect(engine.info.threadSafe).toBe(false);
    const generations = Array.from({ length: 6 }, () => engine.generate({ modelId: 'm', prompt: 'x' }));
    const others = [
      engine.loadModel('n', { path: modelPath, format: 'gguf' }).then(() => engine.unloadModel('n')),
      engine.estimateVram({ path: modelPath, format: 'gguf' }),
      engine.vramUsed(),
    ];
    // unsafe.c fails a generation with "overlapping calls" once any two calls overlapped.
    for (const generation of generations) expect(await text(generation)).toBe('toktoktoktoktok');
    await Promise.all(others);
    await engine.close();
  });

  test('asks a plugin that is not thread-safe for model stats beside its generation, without waiting for it', async () => {
    const engine = await openReady({}, 'unsafe');
    const generation = engine.generate({ modelId: 'm', prompt: 'x' });
    const first = await generation.next(); // the generation holds the plugin until its fifth token
    expect(await engine.modelStats('m')).toEqual({ running: 1, waiting: 0, kvCellsUsed: 0, kvCellsTotal: 0 });
    // All five tokens (the first chunk may carry more than one), and the stats call did not count as an overlap.
    expect((first.done ? '' : first.value.text) + (await text(generation))).toBe('toktoktoktoktok');
    expect(await engine.modelStats('m')).toMatchObject({ running: 0 });
    await engine.close();
  });

  test('the overlap check of that plugin works: claiming thread safety, it sees overlapping calls', async () => {
    const engine = await openReady({ CLAIM_THREAD_SAFE: 1 }, 'unsafe');
    const results = await Promise.allSettled(Array.from({ length: 6 }, () => engine.generate({ modelId: 'm', prompt: 'x' }).result));
    expect(results.some((r) => r.status === 'rejected' && /overlapping calls/.test((r.reason as Error).message))).toBe(true);
    await engine.close();
  });

  test('runs generations off the libuv threadpool: fs still works while more run than the pool has threads', async () => {
    const engine = await openReady({ ECHO_TOKEN_DELAY_US: 20000 });
    const generations = Array.from({ length: 8 }, () => engine.generate({ modelId: 'm', prompt: 'a', ignoreEos: true, maxTokens: 10_000 }));
    let ended = 0;
    for (const generation of generations) void generation.result.then(() => ended++);
    await readFile(fileURLToPath(import.meta.url));
    expect(ended).toBe(0);
    await engine.close();
    for (const generation of generations) expect((await generation.result).finishReason).toBe('cancelled');
  });
});

describe('closing and unloading under load', () => {
  test('close() while generating cancels, waits for the threads, shuts down and unloads', async () => {
    const engine = await openReady({ ECHO_TOKEN_DELAY_US: 20000 });
    const generations = Array.from({ length: 4 }, () => engine.generate({ modelId: 'm', prompt: 'a', ignoreEos: true, maxTokens: 10_000 }));
    await generations[0]!.next();
    await engine.close();
    for (const generation of generations) {
      expect((await generation.result).finishReason).toBe('cancelled');
      expect(await generation.next()).toEqual({ value: undefined, done: true });
    }
    await expect(engine.generate({ modelId: 'm', prompt: 'a' }).result).rejects.toMatchObject({ code: 'closed' });
  });

  test('unloadModel stops the generations on that model first', async () => {
    const engine = await openReady({ ECHO_TOKEN_DELAY_US: 20000 });
    await engine.loadModel('other', { path: modelPath, format: 'gguf' });
    const onModel = engine.generate({ modelId: 'm', prompt: 'a', ignoreEos: true, maxTokens: 10_000 });
    const onOther = engine.generate({ modelId: 'other', prompt: 'a b', maxTokens: 2 });
    await onModel.next();
    await engine.unloadModel('m');
    expect((await onModel.result).finishReason).toBe('cancelled');
    expect((await onOther.result).finishReason).toBe('length');
    await expect(engine.generate({ modelId: 'm', prompt: 'a' }).result).rejects.toMatchObject({ code: 'model_not_loaded' });
    await engine.close();
  });
});
