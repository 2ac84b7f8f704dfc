// The onnx plugin through the real binding (@llm-node/abi-native) on a made model, against ONNX Runtime itself
// (onnxruntime-node, src/reference.ts) on the same graph.
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { openEngine } from '@llm-node/abi-native';
import type { Engine, GenerateRequest, GenerateResult, TokenDetail } from '@llm-node/abi-native';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { builtPluginDir } from './built-plugin.js';
import { makeOnnxModel } from './make-model.js';
import { graphWithoutCache } from './graph-without-cache.js';
import { openReference, type ReferenceDecoder } from './reference.js';
import { llama3ChatPieces, readTokenText } from './token-text.js';

const pluginDir = builtPluginDir();
const USER = ['Hello', '!'];
const CHAT_PROMPT = llama3ChatPieces(USER).join('');

let engine: Engine;
let reference: ReferenceDecoder;
let workDir: string;
let modelDir: string;
let promptIds: number[];

beforeAll(async () => {
  if (pluginDir === undefined) return;
  workDir = await mkdtemp(join(tmpdir(), 'onnx-engine-'));
  modelDir = join(workDir, 'tiny');
  await makeOnnxModel(modelDir);
  const text = await readTokenText(modelDir);
  promptIds = llama3ChatPieces(USER).map((piece) => text.idOf(piece));
  reference = await openReference(modelDir);
  const manifest = JSON.parse(await readFile(join(pluginDir, 'manifest.json'), 'utf8')) as { id: string; binary: string };
  engine = openEngine(join(pluginDir, manifest.binary), { expectedId: manifest.id });
  await engine.init({ gpuBackend: 'cpu', pluginDir });
  await engine.loadModel('tiny', { path: modelDir, format: 'onnx', contextLength: 256, parallel: 4 });
}, 120_000);

afterAll(async () => {
  await engine?.close();
  await reference?.release();
  if (workDir) await rm(workDir, { recursive: true, force: true });
});

interface Outcome {
  text: string;
  tokens: TokenDetail[];
  result: GenerateResult;
}

async function generate(request: Partial<GenerateRequest>, options: { signal?: AbortSignal } = {}): Promise<Outcome> {
  const generation = engine.generate(
    { modelId: 'tiny', prompt: CHAT_PROMPT, parseSpecial: true, maxTokens: 16, temperature: 0, logprobs: true, ...request },
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

describe.skipIf(pluginDir === undefined)('the onnx plugin', () => {
  it('reports itself as thread-safe, biasing logits, with every optional entry point but structured output', () => {
    expect(engine.info).toMatchObject({ id: 'onnx', abiVersion: 1, threadSafe: true, jsonSchema: false, logitBias: true });
    expect([...engine.capabilities].sort()).toEqual(
      [
        'generate_stream',
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

  it('decodes greedily exactly as ONNX Runtime does on the same graph, token for token', async () => {
    const { tokens, result } = await generate({ maxTokens: 24, ignoreEos: true });
    expect(result).toEqual({ finishReason: 'length', promptTokens: promptIds.length, completionTokens: 24 });
    expect(tokens.map((t) => t.id)).toEqual(await reference.greedy(promptIds, 24));
  });

  it('runs a prompt longer than one chunk of the graph (128 tokens) as the reference does', async () => {
    const user = Array.from({ length: 150 }, (_, i) => (i % 2 === 0 ? 'Hello' : '!'));
    const prompt = llama3ChatPieces(user);
    const text = await readTokenText(modelDir);
    const { tokens, result } = await generate({ prompt: prompt.join(''), maxTokens: 8, ignoreEos: true });
    expect(result.promptTokens).toBe(prompt.length);
    expect(tokens.map((t) => t.id)).toEqual(
      await reference.greedy(
        prompt.map((p) => text.idOf(p)),
        8,
      ),
    );
  });

  it("continues from an earlier generation's cache when a prompt starts with what it holds, as the reference runs the whole", async () => {
    // The first generation is held to ' Hello' three times; the next prompt is that conversation going on.
    const text = await readTokenText(modelDir);
    const hello = text.idOf(' Hello');
    const first = await generate({ maxTokens: 3, ignoreEos: true, logitBias: { [hello]: 100 } });
    expect(first.tokens.map((t) => t.id)).toEqual([hello, hello, hello]);
    const pieces = [...llama3ChatPieces(USER), ' Hello', ' Hello', ' Hello', '!'];
    const { tokens, result } = await generate({ prompt: pieces.join(''), maxTokens: 12, ignoreEos: true });
    expect(result.promptTokens).toBe(pieces.length);
    expect(tokens.map((t) => t.id)).toEqual(
      await reference.greedy(
        pieces.map((p) => text.idOf(p)),
        12,
      ),
    );
  });

  it('repeats a sampled completion for the same seed and not for another', async () => {
    const request = { temperature: 1, seed: 1234 };
    const first = await generate(request);
    const again = await generate(request);
    const other = await generate({ ...request, seed: 4321 });
    expect(again.tokens.map((t) => t.id)).toEqual(first.tokens.map((t) => t.id));
    expect(other.tokens.map((t) => t.id)).not.toEqual(first.tokens.map((t) => t.id));
  });

  it('ends at a stop string without emitting it or what follows', async () => {
    const { text: full } = await generate({ maxTokens: 40, ignoreEos: true });
    const stop = full.slice(20, 24);
    const { text, result } = await generate({ maxTokens: 40, ignoreEos: true, stop: [stop] });
    expect(result.finishReason).toBe('stop');
    expect(text).toBe(full.slice(0, full.indexOf(stop)));
  });

  it('adds logit biases before choosing, and refuses a token outside the vocabulary', async () => {
    const { tokens } = await generate({ maxTokens: 4, ignoreEos: true, logitBias: { 9906: 100 } });
    expect(tokens.map((t) => t.id)).toEqual([9906, 9906, 9906, 9906]);
    const outside = engine.generate({ modelId: 'tiny', prompt: CHAT_PROMPT, logitBias: { 200000: 1 } });
    await expect(outside.result).rejects.toMatchObject({ code: 'invalid_argument' });
  });

  it('gives each of four concurrent requests the greedy output it gets alone', async () => {
    const questions = [['Hello'], ['Hello', '!'], ['!'], ['!', 'Hello']];
    const request = (user: string[]) => ({ prompt: llama3ChatPieces(user).join(''), maxTokens: 12, ignoreEos: true });
    const alone = [];
    for (const user of questions) alone.push(await generate(request(user)));
    const together = await Promise.all(questions.map((user) => generate(request(user))));
    expect(together.map((o) => o.tokens.map((t) => t.id))).toEqual(alone.map((o) => o.tokens.map((t) => t.id)));
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
    expect(result.completionTokens).toBeLessThan(256 - promptIds.length);
  });

  it('generates until the context is full when max tokens is 0', async () => {
    const { result } = await generate({ maxTokens: 0, ignoreEos: true, logprobs: false });
    expect(result.finishReason).toBe('length');
    expect(result.promptTokens + result.completionTokens).toBe(256);
  });

  it('refuses a prompt longer than the context', async () => {
    const generation = engine.generate({ modelId: 'tiny', prompt: 'llama '.repeat(300) });
    await expect(generation.result).rejects.toMatchObject({ code: 'context_overflow' });
  });

  it('reports what its generations hold while they run', async () => {
    const generation = engine.generate({ modelId: 'tiny', prompt: CHAT_PROMPT, parseSpecial: true, maxTokens: 0, ignoreEos: true });
    for await (const chunk of generation) {
      if (chunk.tokenCount > 0) break;
    }
    expect(await engine.modelStats('tiny')).toMatchObject({ kvCellsTotal: 4 * 256 });
    await generation.result.catch(() => undefined);
  });
});

describe.skipIf(pluginDir === undefined)('loading', () => {
  it('estimates what a load reports holding, and the sum of loaded models is what it uses', async () => {
    const params = { path: modelDir, format: 'onnx' as const, contextLength: 1024, parallel: 2 };
    const estimate = await engine.estimateVram(params);
    const before = (await engine.vramUsed())!;
    const loaded = await engine.loadModel('sized', params);
    expect(await engine.vramUsed()).toBe(before + loaded.vramBytes);
    await engine.unloadModel('sized');
    expect(await engine.vramUsed()).toBe(before);
    expect(estimate).toBe(loaded.vramBytes);
  });

  it('refuses a load over its budget', async () => {
    const load = engine.loadModel('small-budget', { path: modelDir, format: 'onnx', contextLength: 256, vramBudgetBytes: 1024 });
    await expect(load).rejects.toMatchObject({ code: 'out_of_memory' });
  });

  it('says what is missing from a folder that is not a model', async () => {
    const empty = join(workDir, 'empty');
    await makeOnnxModel(empty, { layers: 1 });
    await rm(join(empty, 'tokenizer.json'));
    await expect(engine.loadModel('x', { path: empty, format: 'onnx' })).rejects.toMatchObject({
      code: 'model_not_found',
      message: expect.stringContaining('tokenizer.json'),
    });
    await expect(engine.loadModel('x', { path: join(workDir, 'nowhere'), format: 'onnx' })).rejects.toMatchObject({
      code: 'model_not_found',
    });
  });

  it('refuses a file that is not an ONNX model as corrupt', async () => {
    const broken = join(workDir, 'broken');
    await makeOnnxModel(broken, { layers: 1 });
    await writeFile(join(broken, 'model.onnx'), 'not a protobuf');
    await expect(engine.loadModel('x', { path: broken, format: 'onnx' })).rejects.toMatchObject({ code: 'model_corrupt' });
  });

  it('refuses a graph without a KV cache, saying which layout it drives', async () => {
    const plain = join(workDir, 'no-cache');
    await makeOnnxModel(plain, { layers: 1 });
    await writeFile(join(plain, 'model.onnx'), graphWithoutCache());
    await expect(engine.loadModel('x', { path: plain, format: 'onnx' })).rejects.toMatchObject({
      code: 'unsupported',
      message: expect.stringContaining('past_key_values.N.key/value'),
    });
  });

  it('drives a graph that exchanges its cache and logits in float16, as DirectML exports do, as ONNX Runtime does', async () => {
    const halfDir = join(workDir, 'half');
    await makeOnnxModel(halfDir, { ioType: 'float16' });
    const halfReference = await openReference(halfDir);
    try {
      await engine.loadModel('half', { path: halfDir, format: 'onnx', contextLength: 256, parallel: 1 });
      const { tokens, result } = await generate({ modelId: 'half', maxTokens: 16, ignoreEos: true });
      expect(result.completionTokens).toBe(16);
      expect(tokens.map((t) => t.id)).toEqual(await halfReference.greedy(promptIds, 16));
    } finally {
      await halfReference.release();
      await engine.unloadModel('half').catch(() => undefined);
    }
  });

  it("reads ONNX Runtime GenAI's genai_config.json in place of config.json", async () => {
    const genaiDir = join(workDir, 'genai');
    await makeOnnxModel(genaiDir, { layers: 1 });
    const config = JSON.parse(await readFile(join(genaiDir, 'config.json'), 'utf8'));
    await rm(join(genaiDir, 'config.json'));
    const genai = {
      model: {
        type: 'llama',
        context_length: 300,
        vocab_size: config.vocab_size,
        eos_token_id: config.eos_token_id,
        decoder: {
          filename: 'model.onnx',
          num_hidden_layers: config.num_hidden_layers,
          num_key_value_heads: config.num_key_value_heads,
          head_size: config.head_dim,
        },
      },
    };
    await writeFile(join(genaiDir, 'genai_config.json'), JSON.stringify(genai));
    expect(await engine.estimateVram({ path: genaiDir, format: 'onnx' })).toBeGreaterThan(0);
    expect(await engine.loadModel('genai', { path: genaiDir, format: 'onnx', parallel: 1 })).toMatchObject({ contextLength: 300 });
    await engine.unloadModel('genai');
  });

  it('refuses a tokenizer.json it does not implement, naming the part', async () => {
    const nfc = join(workDir, 'nfc');
    await makeOnnxModel(nfc, { layers: 1 });
    const tokenizer = JSON.parse(await readFile(join(nfc, 'tokenizer.json'), 'utf8'));
    await writeFile(join(nfc, 'tokenizer.json'), JSON.stringify({ ...tokenizer, normalizer: { type: 'NFC' } }));
    await expect(engine.loadModel('x', { path: nfc, format: 'onnx' })).rejects.toMatchObject({
      code: 'unsupported',
      message: expect.stringContaining('normalizer'),
    });
  });

  it('refuses another format', async () => {
    await expect(engine.loadModel('x', { path: modelDir, format: 'gguf' })).rejects.toMatchObject({ code: 'unsupported' });
  });
});
