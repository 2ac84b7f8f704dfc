import { mkdtemp, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { EngineHost, openEngine } from './index.js';
import type { Engine } from './index.js';
import { buildTestPlugin } from './testing/index.js';

// The echo plugin's embedding: component i counts the input's bytes equal to i modulo 8.
function echoEmbedding(text: string): number[] {
  const row = new Array(8).fill(0);
  for (const byte of Buffer.from(text)) row[byte % 8] += 1;
  return row;
}

let modelPath: string;
const engines: Record<string, Engine> = {};

beforeAll(async () => {
  modelPath = join(await mkdtemp(join(tmpdir(), 'llm-node-abi-embed-')), 'tiny.gguf');
  await writeFile(modelPath, Buffer.alloc(100));
  const echo = await buildTestPlugin('echo');
  engines['in this process'] = openEngine(echo);
  engines['in an engine host'] = await EngineHost.start(echo);
  for (const engine of Object.values(engines)) {
    await engine.init({ gpuBackend: 'cpu', pluginDir: tmpdir() });
  }
});

afterAll(async () => {
  await Promise.all(Object.values(engines).map((engine) => engine.close()));
});

describe.each(['in this process', 'in an engine host'])('embeddings %s', (where) => {
  test('a loaded model reports its embedding length, and embeds each input in order', async () => {
    const engine = engines[where]!;
    expect(engine.capabilities).toContain('embed');
    const loaded = await engine.loadModel('tiny', { path: modelPath, format: 'gguf' });
    expect(loaded.embeddingLength).toBe(8);
    const result = await engine.embed({ modelId: 'tiny', inputs: ['Hello big world', 'ab', 'a\0b'] });
    expect(result.embeddings.map((row) => [...row])).toEqual([
      echoEmbedding('Hello big world'),
      echoEmbedding('ab'),
      echoEmbedding('a\0b'),
    ]);
    expect(result.promptTokens).toBe(3 + 1 + 1);
    await engine.unloadModel('tiny');
  });

  test("the plugin's refusal of an empty input is an invalid_argument error", async () => {
    const engine = engines[where]!;
    await engine.loadModel('refusing', { path: modelPath, format: 'gguf' });
    await expect(engine.embed({ modelId: 'refusing', inputs: ['fine', ''] })).rejects.toMatchObject({
      code: 'invalid_argument',
      message: expect.stringContaining('input 1 is empty'),
    });
    await engine.unloadModel('refusing');
  });

  test('a model that is not loaded is model_not_loaded, before the plugin is asked', async () => {
    await expect(engines[where]!.embed({ modelId: 'absent', inputs: ['x'] })).rejects.toMatchObject({ code: 'model_not_loaded' });
  });
});

test('a plugin without engine_embed loads models with embedding length 0 and refuses embeddings as unsupported', async () => {
  const engine = openEngine(await buildTestPlugin('minimal'));
  try {
    await engine.init({ gpuBackend: 'cpu', pluginDir: tmpdir() });
    expect(engine.capabilities).not.toContain('embed');
    const loaded = await engine.loadModel('only', { path: modelPath, format: 'gguf' });
    expect(loaded.embeddingLength).toBe(0);
    await expect(engine.embed({ modelId: 'only', inputs: ['x'] })).rejects.toMatchObject({ code: 'unsupported' });
  } finally {
    await engine.close();
  }
});
