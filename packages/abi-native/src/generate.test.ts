import { mkdtemp, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { openEngine } from './index.js';
import type { Engine, Generation, TokenChunk } from './index.js';
import { buildTestPlugin } from './testing/index.js';

/** Every chunk, the whole text, and each token's own piece of it (from pieceEnds). */
async function collect(generation: Generation) {
  const chunks: TokenChunk[] = [];
  for await (const chunk of generation) chunks.push(chunk);
  const pieces = chunks.flatMap((chunk) => {
    expect(chunk.pieceEnds.length).toBe(chunk.tokenCount);
    expect(chunk.pieceEnds.at(-1) ?? 0).toBe(chunk.text.length);
    return [...chunk.pieceEnds].map((end, i) => chunk.text.slice(chunk.pieceEnds[i - 1] ?? 0, end));
  });
  return { chunks, pieces, text: chunks.map((chunk) => chunk.text).join(''), result: await generation.result };
}

const counters = (from: number, to: number) => Array.from({ length: to - from + 1 }, (_, i) => ` ${from + i}`);

let echo: Engine;
let slow: Engine;
let modelPath: string;

beforeAll(async () => {
  modelPath = join(await mkdtemp(join(tmpdir(), 'llm-node-abi-models-')), 'tiny.gguf');
  await writeFile(modelPath, Buffer.alloc(100));
  echo = openEngine(await buildTestPlugin('echo'));
  slow = openEngine(await buildTestPlugin('echo', { defines: { ECHO_TOKEN_DELAY_US: 20000 } }));
  for (const engine of [echo, slow]) {
    await engine.init({ gpuBackend: 'cpu', pluginDir: tmpdir() });
    await engine.loadModel('tiny', { path: modelPath, format: 'gguf', contextLength: 8 });
    await engine.loadModel('big', { path: modelPath, format: 'gguf', contextLength: 1_000_000 });
  }
});

afterAll(async () => {
  await echo.close();
  await slow.close();
});

describe('streaming generation', () => {
  test('echoes the prompt, each token with its own piece of the text, and stops', async () => {
    const { pieces, text, result } = await collect(echo.generate({ modelId: 'tiny', prompt: 'Hello big world' }));
    expect(pieces).toEqual(['Hello', ' big', ' world']);
    expect(text).toBe('Hello big world');
    expect(result).toEqual({ finishReason: 'stop', promptTokens: 3, completionTokens: 3 });
  });

  test('stops after maxTokens with finish reason length', async () => {
    const { pieces, result } = await collect(echo.generate({ modelId: 'tiny', prompt: 'Hello big world', maxTokens: 2 }));
    expect(pieces).toEqual(['Hello', ' big']);
    expect(result.finishReason).toBe('length');
  });

  test('goes on past the end with ignoreEos until the context is full', async () => {
    const { pieces, result } = await collect(echo.generate({ modelId: 'tiny', prompt: 'Hello big world', ignoreEos: true }));
    expect(pieces).toEqual(['Hello', ' big', ' world', ' 4', ' 5']);
    expect(result).toEqual({ finishReason: 'length', promptTokens: 3, completionTokens: 5 });
  });

  test('ends at a stop string, with only the text before it', async () => {
    const { text, pieces, result } = await collect(echo.generate({ modelId: 'big', prompt: 'one two three four', stop: ['xyz', 'ee f'] }));
    expect(text).toBe('one two thr');
    expect(pieces).toEqual(['one', ' two', ' thr']);
    expect(result.finishReason).toBe('stop');
  });

  test('refuses a prompt longer than the context, with the plugin’s message', async () => {
    await expect(echo.generate({ modelId: 'tiny', prompt: 'a b c d e f g h i j' }).result).rejects.toMatchObject({
      code: 'context_overflow',
      message: 'the prompt has 10 tokens but the context holds 8',
    });
  });

  test('refuses a model that is not loaded, with the plugin’s message', async () => {
    await expect(echo.generate({ modelId: 'nope', prompt: 'x' }).result).rejects.toMatchObject({
      code: 'model_not_loaded',
      message: "model 'nope' is not loaded",
    });
  });

  test('reports each token’s id, bytes and logprob when asked', async () => {
    const { chunks } = await collect(echo.generate({ modelId: 'tiny', prompt: 'Hi you', logprobs: true }));
    expect(chunks.flatMap((chunk) => chunk.tokens)).toEqual([
      { id: 0, text: 'Hi', bytes: [72, 105], logprob: -0.25 },
      { id: 1, text: ' you', bytes: [32, 121, 111, 117], logprob: -0.25 },
    ]);
  });

  test('batches tokens when the engine outpaces JS, and a late reader gets what piled up as one chunk', async () => {
    const generation = echo.generate({ modelId: 'big', prompt: 'go', ignoreEos: true, maxTokens: 50_000 });
    const first = await generation.next();
    await new Promise((resolve) => setTimeout(resolve, 20)); // chunks queue meanwhile, and are merged
    const rest = await collect(generation);
    const chunks = [first.value as TokenChunk, ...rest.chunks];
    const pieces = [...first.value!.pieceEnds].map((end, i, ends) => first.value!.text.slice(ends[i - 1] ?? 0, end)).concat(rest.pieces);
    expect(pieces).toEqual(['go', ...counters(2, 50_000)]);
    expect(chunks.length).toBeLessThan(50_000 / 2);
    expect(rest.result).toEqual({ finishReason: 'length', promptTokens: 1, completionTokens: 50_000 });
  });

  test('a plugin without engine_generate_stream delivers its whole completion as one chunk', async () => {
    const legacy = openEngine(await buildTestPlugin('legacy'));
    await legacy.init({ gpuBackend: 'cpu', pluginDir: tmpdir() });
    await legacy.loadModel('m', { path: modelPath, format: 'gguf' });
    const { chunks, pieces, result } = await collect(legacy.generate({ modelId: 'm', prompt: 'Hello big world', maxTokens: 1 }));
    expect(chunks).toHaveLength(1);
    expect(pieces).toEqual(['Hello', ' big', ' world']); // sampling parameters do not reach it
    expect(result).toEqual({ finishReason: 'stop', promptTokens: 0, completionTokens: 3 });
    await legacy.close();
  });
});

describe('cancelling a generation', () => {
  test('an abort stops it before the next token: the loop ends and result says cancelled', async () => {
    const controller = new AbortController();
    const generation = slow.generate({ modelId: 'big', prompt: 'a b c', ignoreEos: true, maxTokens: 1000 }, { signal: controller.signal });
    let afterAbort = 0;
    for await (const chunk of generation) {
      if (controller.signal.aborted) afterAbort += chunk.tokenCount;
      controller.abort();
    }
    expect(afterAbort).toBe(0);
    const result = await generation.result;
    expect(result.finishReason).toBe('cancelled');
    expect(result.completionTokens).toBeLessThan(1000);
  });

  test('leaving the loop early cancels it', async () => {
    const generation = slow.generate({ modelId: 'big', prompt: 'a b c', ignoreEos: true, maxTokens: 1000 });
    for await (const chunk of generation) {
      expect(chunk.tokenCount).toBeGreaterThan(0);
      break;
    }
    expect((await generation.result).finishReason).toBe('cancelled');
  });

  test('a consumer that throws cancels it and sees its own error, once', async () => {
    const generation = slow.generate({ modelId: 'big', prompt: 'a b c', ignoreEos: true, maxTokens: 1000 });
    const consume = async () => {
      for await (const _ of generation) throw new Error('consumer failed');
    };
    await expect(consume()).rejects.toThrow('consumer failed');
    expect((await generation.result).finishReason).toBe('cancelled');
    expect(await generation.next()).toEqual({ value: undefined, done: true });
  });

  test('an already aborted signal never starts it', async () => {
    const { chunks, result } = await collect(slow.generate({ modelId: 'big', prompt: 'a' }, { signal: AbortSignal.abort() }));
    expect(chunks).toEqual([]);
    expect(result).toEqual({ finishReason: 'cancelled', promptTokens: 0, completionTokens: 0 });
  });
});
