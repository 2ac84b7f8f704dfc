import { existsSync } from 'node:fs';
import { copyFile, mkdtemp, readFile, rm, truncate, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

import { EngineError, openEngine } from '@llm-node/abi-native';
import type { Engine, GenerateRequest, GenerateResult, LoadProgress, TokenDetail } from '@llm-node/abi-native';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { makeModel } from './make-model.js';
import { PLATFORM_RUNTIMES } from './prebuilt.js';

// The first plugin folder this package's build makes on this platform (cpu on linux-x64 and win32-x64, metal on
// darwin-arm64): engines/llama_cpp/<gpu_backend>/.
const backend = PLATFORM_RUNTIMES[`${process.platform}-${process.arch}`]?.[0]?.backend;
const candidate = backend === undefined ? undefined : fileURLToPath(new URL(`../${backend}/`, import.meta.url));
const pluginDir = candidate !== undefined && existsSync(join(candidate, 'manifest.json')) ? candidate : undefined;
// On CI the plugin this platform should have must be there: its tests fail instead of skipping.
if (pluginDir === undefined && backend !== undefined && process.env.CI) throw new Error(`engines/llama_cpp/${backend}/ was not built`);
const describeWithPlugin = describe.skipIf(pluginDir === undefined);

const CHAT_PROMPT =
  '<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\nHello!<|eot_id|>' + '<|start_header_id|>assistant<|end_header_id|>\n\n';

let engine: Engine;
let workDir: string;
let modelPath: string;

beforeAll(async () => {
  if (pluginDir === undefined) return;
  workDir = await mkdtemp(join(tmpdir(), 'llama-cpp-engine-'));
  modelPath = join(workDir, 'model.gguf');
  await makeModel(modelPath);
  const manifest = JSON.parse(await readFile(join(pluginDir, 'manifest.json'), 'utf8')) as {
    id: string;
    gpu_backend: string;
    binary: string;
  };
  engine = openEngine(join(pluginDir, manifest.binary), { expectedId: manifest.id });
  await engine.init({ gpuBackend: manifest.gpu_backend, pluginDir });
  await engine.loadModel('tiny', { path: modelPath, format: 'gguf', contextLength: 512, parallel: 4 });
}, 120_000);

afterAll(async () => {
  await engine?.close();
  if (workDir) await rm(workDir, { recursive: true, force: true });
});

interface Outcome {
  text: string;
  tokens: TokenDetail[];
  result: GenerateResult;
}

async function generate(request: Partial<GenerateRequest>, options: { signal?: AbortSignal } = {}): Promise<Outcome> {
  const generation = engine.generate(
    { modelId: 'tiny', prompt: CHAT_PROMPT, parseSpecial: true, maxTokens: 24, temperature: 0, ...request },
    options,
  );
  let text = '';
  const tokens: TokenDetail[] = [];
  for await (const chunk of generation) {
    text += chunk.text;
    tokens.push(...(chunk.tokens ?? []));
  }
  return { text, tokens, result: await generation.result };
}

describeWithPlugin('the llama_cpp plugin', () => {
  it('reports itself as thread-safe, holding output to JSON schemas and biasing logits, with every optional entry point', () => {
    expect(engine.info).toMatchObject({ id: 'llama_cpp', abiVersion: 1, threadSafe: true, jsonSchema: true, logitBias: true });
    expect([...engine.capabilities].sort()).toEqual(
      [
        'embed',
        'generate_stream',
        'json_schema',
        'last_error',
        'logit_bias',
        'model_estimate_vram',
        'model_load',
        'model_stats',
        'thread_safe',
        'vram_used',
      ].sort(),
    );
  });

  it('streams a completion of the requested length', async () => {
    const { text, result } = await generate({ maxTokens: 16 });
    expect(text.length).toBeGreaterThan(0);
    expect(result).toEqual({ finishReason: 'length', promptTokens: 12, completionTokens: 16 });
  });

  it('gives the same tokens twice at temperature 0', async () => {
    const first = await generate({ logprobs: true });
    const second = await generate({ logprobs: true });
    expect(second.tokens.map((t) => t.id)).toEqual(first.tokens.map((t) => t.id));
    expect(second.text).toBe(first.text);
  });

  it('repeats a sampled completion for the same seed and not for another', async () => {
    const request = { temperature: 1, seed: 1234, logprobs: true };
    const first = await generate(request);
    const again = await generate(request);
    const other = await generate({ ...request, seed: 4321 });
    expect(again.tokens.map((t) => t.id)).toEqual(first.tokens.map((t) => t.id));
    expect(other.tokens.map((t) => t.id)).not.toEqual(first.tokens.map((t) => t.id));
  });

  it('reports each token with a log-probability when asked', async () => {
    const { tokens, result } = await generate({ temperature: 0.7, topK: 40, topP: 0.9, seed: 7, logprobs: true });
    expect(tokens).toHaveLength(result.completionTokens);
    for (const token of tokens) {
      expect(token.logprob).toBeLessThanOrEqual(0);
      expect(Number.isFinite(token.logprob)).toBe(true);
    }
  });

  it('never repeats a token under a large presence penalty', async () => {
    const { tokens } = await generate({ maxTokens: 40, presencePenalty: 100, logprobs: true });
    const ids = tokens.map((t) => t.id);
    expect(new Set(ids).size).toBe(ids.length);
  });

  it('ends at a stop string without emitting it or what follows', async () => {
    const { text: full } = await generate({ maxTokens: 40 });
    const stop = full.slice(20, 24);
    const { text, result } = await generate({ maxTokens: 40, stop: [stop] });
    expect(result.finishReason).toBe('stop');
    expect(text).toBe(full.slice(0, full.indexOf(stop)));
  });

  it('stops promptly when the consumer cancels', async () => {
    const controller = new AbortController();
    const generation = engine.generate(
      { modelId: 'tiny', prompt: CHAT_PROMPT, parseSpecial: true, maxTokens: 0, ignoreEos: true },
      { signal: controller.signal },
    );
    for await (const chunk of generation) {
      if (chunk.tokenCount > 0) controller.abort();
    }
    const result = await generation.result;
    expect(result.finishReason).toBe('cancelled');
    expect(result.completionTokens).toBeLessThan(512 - 12);
  });

  it('gives each of several concurrent requests the greedy output it gets alone', async () => {
    const prompts = ['Hello!', 'What is a llama?', 'Count to ten.', 'Write a haiku.', 'Why is the sky blue?', 'Hi'];
    const request = (question: string) => ({
      prompt: CHAT_PROMPT.replace('Hello!', question),
      maxTokens: 20,
      logprobs: true,
    });
    const alone = [];
    for (const question of prompts) alone.push(await generate(request(question)));
    const together = await Promise.all(prompts.map((question) => generate(request(question))));
    expect(together.map((o) => o.tokens.map((t) => t.id))).toEqual(alone.map((o) => o.tokens.map((t) => t.id)));
    expect(together.map((o) => o.text)).toEqual(alone.map((o) => o.text));
  });

  it('generates until the context is full when max tokens is 0', async () => {
    const { result } = await generate({ maxTokens: 0, ignoreEos: true });
    expect(result.finishReason).toBe('length');
    expect(result.promptTokens + result.completionTokens).toBe(512);
  });

  it('refuses a prompt longer than the context', async () => {
    const generation = engine.generate({ modelId: 'tiny', prompt: 'llama '.repeat(600) });
    await expect(generation.result).rejects.toMatchObject({ code: 'context_overflow' });
  });
});

describeWithPlugin("the model maker's text-only model", () => {
  const FIRST_SPECIAL_TOKEN = 128000; // Llama 3's special tokens are the vocabulary's last 256
  const utf8 = new TextDecoder('utf-8', { fatal: true });
  const isWholeText = (token: TokenDetail) => {
    try {
      utf8.decode(Uint8Array.from(token.bytes));
      return token.id < FIRST_SPECIAL_TOKEN;
    } catch {
      return false;
    }
  };

  it('writes whole UTF-8 tokens only, never a special one, greedy and sampled, where random weights split characters', async () => {
    const path = join(workDir, 'text-only.gguf');
    await makeModel(path, {}, { textOnly: true });
    await engine.loadModel('text-only', { path, format: 'gguf', contextLength: 1024, parallel: 1 });
    for (const temperature of [0, 1]) {
      const { tokens } = await generate({ modelId: 'text-only', maxTokens: 300, temperature, seed: 1, logprobs: true });
      expect(tokens).toHaveLength(300);
      expect(tokens.filter((token) => !isWholeText(token))).toEqual([]);
    }
    await engine.unloadModel('text-only');
    const random = await generate({ maxTokens: 300, temperature: 1, seed: 1, logprobs: true });
    expect(random.tokens.some((token) => !isWholeText(token))).toBe(true);
  });
});

describeWithPlugin('loading and unloading', () => {
  it('estimates at least the memory a load takes, and not far more', async () => {
    const params = { path: modelPath, format: 'gguf' as const, contextLength: 4096, parallel: 2 };
    const estimate = await engine.estimateVram(params);
    const loaded = await engine.loadModel('sized', params);
    await engine.unloadModel('sized');
    expect(estimate).toBeGreaterThanOrEqual(loaded.vramBytes);
    expect(estimate).toBeLessThan(loaded.vramBytes * 1.2);
  });

  it('holds several models at once and frees the memory of one unloaded', async () => {
    const before = (await engine.vramUsed())!;
    const second = await engine.loadModel('second', { path: modelPath, format: 'gguf', contextLength: 256, parallel: 1 });
    expect(second.contextLength).toBe(256);
    expect(await engine.vramUsed()).toBe(before + second.vramBytes);
    const generation = engine.generate({ modelId: 'second', prompt: 'Hello', maxTokens: 4 });
    expect((await generation.result).completionTokens).toBe(4);
    await engine.unloadModel('second');
    expect(await engine.vramUsed()).toBe(before);
    const still = await generate({ maxTokens: 4 });
    expect(still.result.completionTokens).toBe(4);
  });

  it('estimates a model file written over since from what it holds now', async () => {
    const path = join(workDir, 'rewritten.gguf');
    const params = { path, format: 'gguf' as const, contextLength: 256, parallel: 1 };
    await makeModel(path, { layers: 1 });
    const before = await engine.estimateVram(params);
    await makeModel(path, { layers: 4 });
    expect(await engine.estimateVram(params)).toBeGreaterThan(before!);
  });

  it('reports its progress while loading: the weights from 0 to 1, then the context', async () => {
    const heard: LoadProgress[] = [];
    await engine.loadModel('watched', { path: modelPath, format: 'gguf', contextLength: 256, parallel: 1 }, (p) => heard.push(p));
    await engine.unloadModel('watched');
    await expect.poll(() => heard.at(-1)).toEqual({ phase: 'context', fraction: 1 });
    const weights = heard.filter((p) => p.phase === 'weights').map((p) => p.fraction);
    expect(weights[0]).toBe(0);
    expect(weights.at(-1)).toBe(1);
    expect(weights).toEqual([...weights].sort((a, b) => a - b));
    expect(heard.map((p) => p.phase)).toEqual([...weights.map(() => 'weights'), 'context', 'context']);
  });

  it('refuses a second model under an id in use', async () => {
    await expect(engine.loadModel('tiny', { path: modelPath, format: 'gguf' })).rejects.toMatchObject({
      code: 'invalid_argument',
    });
  });

  it('refuses a model over its memory budget', async () => {
    await expect(
      engine.loadModel('small-budget', { path: modelPath, format: 'gguf', contextLength: 512, vramBudgetBytes: 1 << 20 }),
    ).rejects.toMatchObject({ code: 'out_of_memory', message: expect.stringContaining('budget') });
  });

  it('reports a truncated GGUF as a corrupt model', async () => {
    const truncated = join(workDir, 'truncated.gguf');
    await copyFile(modelPath, truncated);
    await truncate(truncated, 20_000_000);
    const failure = engine.loadModel('truncated', { path: truncated, format: 'gguf' });
    await expect(failure).rejects.toBeInstanceOf(EngineError);
    await expect(failure).rejects.toMatchObject({ code: 'model_corrupt', message: expect.stringContaining('truncated') });
  });

  it('reports a file that is not GGUF as a corrupt model', async () => {
    const text = join(workDir, 'not-a-model.gguf');
    await copyFile(fileURLToPath(import.meta.url), text);
    await expect(engine.loadModel('text', { path: text, format: 'gguf' })).rejects.toMatchObject({
      code: 'model_corrupt',
    });
  });

  it('estimates a damaged or cut GGUF header as a corrupt model, never reading past it or crashing', async () => {
    const header = smallGguf();
    expect(await engine.estimateVram({ path: await written('whole.gguf', header), format: 'gguf', contextLength: 512 })).toBeGreaterThan(0);
    let seed = 7;
    const random = () => {
      seed = (seed * 1_103_515_245 + 12_345) % 2 ** 31;
      return seed / 2 ** 31;
    };
    for (let round = 0; round < 300; round++) {
      const bytes = Buffer.from(header);
      for (let i = 0; i < 1 + Math.floor(random() * 4); i++)
        bytes[4 + Math.floor(random() * (header.length - 4))] = Math.floor(random() * 256);
      const cut = round % 3 === 0 ? Math.floor(random() * bytes.length) : bytes.length;
      const path = await written('damaged.gguf', bytes.subarray(0, cut));
      await engine.estimateVram({ path, format: 'gguf', contextLength: 512 }).then(
        (bytesNeeded) => expect(bytesNeeded).toBeGreaterThanOrEqual(0),
        (error: unknown) => expect(error).toMatchObject({ code: 'model_corrupt' }),
      );
    }
  });

  it('reports a missing file as not found', async () => {
    await expect(engine.loadModel('missing', { path: join(workDir, 'missing.gguf'), format: 'gguf' })).rejects.toMatchObject({
      code: 'model_not_found',
    });
  });

  it('refuses safetensors', async () => {
    await expect(engine.loadModel('st', { path: workDir, format: 'safetensors' })).rejects.toMatchObject({
      code: 'unsupported',
    });
  });
});

async function written(name: string, bytes: Buffer): Promise<string> {
  const path = join(workDir, name);
  await writeFile(path, bytes);
  return path;
}

/**
 * A GGUF (version 3) with a few keys, a short vocabulary and two tensors (F32 64×4 and F16 32), its tensor data
 * included: the shapes the plugin's header reader walks through.
 */
function smallGguf(): Buffer {
  const parts: Buffer[] = [];
  const u32 = (n: number) => parts.push(Buffer.from(Uint32Array.of(n).buffer));
  const u64 = (n: number) => parts.push(Buffer.from(BigUint64Array.of(BigInt(n)).buffer));
  const str = (text: string) => {
    u64(Buffer.byteLength(text));
    parts.push(Buffer.from(text));
  };
  parts.push(Buffer.from('GGUF'));
  u32(3);
  u64(2); // tensors
  u64(4); // keys
  str('general.architecture');
  u32(8);
  str('llama');
  str('llama.block_count');
  u32(4);
  u32(2);
  str('llama.attention.head_count_kv');
  u32(9);
  u32(4);
  u64(2);
  u32(2);
  u32(1);
  str('tokenizer.ggml.tokens');
  u32(9);
  u32(8);
  u64(3);
  for (const token of ['<s>', '</s>', 'hello']) str(token);
  for (const [name, dims, type, offset] of [
    ['a', [64, 4], 0, 0],
    ['b', [32], 1, 1024],
  ] as const) {
    str(name);
    u32(dims.length);
    for (const d of dims) u64(d);
    u32(type);
    u64(offset);
  }
  const header = Buffer.concat(parts);
  const dataOffset = Math.ceil(header.length / 32) * 32;
  return Buffer.concat([header, Buffer.alloc(dataOffset - header.length + 1024 + 64)]);
}
