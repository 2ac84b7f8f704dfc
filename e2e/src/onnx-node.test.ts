// The onnx plugin served by a whole node: the llm-node command's start-up on `cpu`, the plugin found in the
// repository's engines/ folder, the registry resolving an ONNX model folder, and the official openai client. The
// greedy output is checked token for token against ONNX Runtime's own decoding of the same graph
// (onnxruntime-node).
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

import type { RunningNode } from '@llm-node/cli';
import { makeOnnxModel } from '@llm-node/engine-onnx';
import {
  builtPluginDir,
  graphWithoutCache,
  llama3ChatPieces,
  openReference,
  type ReferenceDecoder,
  readTokenText,
  type TokenText,
} from '@llm-node/engine-onnx/testing';
import OpenAI from 'openai';
import { startInProcessNode } from './in-process-node.js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

const enginesDir = fileURLToPath(new URL('../../engines/', import.meta.url));
const built = builtPluginDir() !== undefined;
// Llama 3's end-of-generation tokens, where the node stops unless told otherwise.
const EOS = [128001, 128008, 128009];

let modelsDir: string;
let node: RunningNode;
let base: string;
let client: OpenAI;
let reference: ReferenceDecoder;
let tokens: TokenText;

beforeAll(async () => {
  if (!built) return;
  modelsDir = await mkdtemp(join(tmpdir(), 'onnx-node-'));
  await makeOnnxModel(join(modelsDir, 'tiny'));
  // An export without a KV cache: the engine cannot drive it, and says why.
  await makeOnnxModel(join(modelsDir, 'no-cache'), { layers: 1 });
  await writeFile(join(modelsDir, 'no-cache', 'model.onnx'), graphWithoutCache());
  reference = await openReference(join(modelsDir, 'tiny'));
  tokens = await readTokenText(join(modelsDir, 'tiny'));
  node = await startInProcessNode({ enginesDir, modelsDir, gpuBackend: 'cpu', contextLength: 2048 });
  base = `http://127.0.0.1:${node.address.port}`;
  client = new OpenAI({ baseURL: `${base}/v1`, apiKey: 'unused' });
}, 120_000);

afterAll(async () => {
  await node?.close();
  await reference?.release();
  if (modelsDir) await rm(modelsDir, { recursive: true, force: true });
});

/** What the node should stream for `content` greedily: the reference's tokens up to an end-of-generation one. */
async function expectedTokens(userPieces: string[], count: number): Promise<Buffer[]> {
  const ids = await reference.greedy(
    llama3ChatPieces(userPieces).map((piece) => tokens.idOf(piece)),
    count,
  );
  const end = ids.findIndex((id) => EOS.includes(id));
  return (end === -1 ? ids : ids.slice(0, end)).map((id) => tokens.bytesOf(id));
}

/** A streamed greedy chat completion's tokens, each as the bytes its logprobs entry gives. */
async function streamedTokens(content: string, maxTokens: number): Promise<{ text: string; tokens: Buffer[]; finish: string | null }> {
  const stream = await client.chat.completions.create({
    model: 'tiny',
    messages: [{ role: 'user', content }],
    max_tokens: maxTokens,
    temperature: 0,
    logprobs: true,
    stream: true,
  });
  let text = '';
  const out: Buffer[] = [];
  let finish: string | null = null;
  for await (const chunk of stream) {
    const choice = chunk.choices[0];
    text += choice?.delta.content ?? '';
    for (const entry of choice?.logprobs?.content ?? []) out.push(Buffer.from(entry.bytes ?? []));
    finish = choice?.finish_reason ?? finish;
  }
  return { text, tokens: out, finish };
}

async function metric(pattern: RegExp): Promise<number> {
  const metrics = await (await fetch(`${base}/metrics`)).text();
  return Number(pattern.exec(metrics)?.[1] ?? 0);
}
const runningRequests = () => metric(/^vllm:num_requests_running\{model="tiny"\} (\d+)/m);
const generatedTokens = () => metric(/^llm_node_generated_tokens_total\{model="tiny"\} (\d+)/m);

describe.skipIf(!built)('the onnx plugin behind llm-node', () => {
  it('is loaded from engines/onnx and loads an ONNX model folder, which holds the memory the plugin reports', async () => {
    const engines = (await (await fetch(`${base}/api/engines`)).json()) as { engines: { id: string; status: string }[] };
    expect(engines.engines).toContainEqual(expect.objectContaining({ id: 'onnx', status: 'loaded' }));
    const load = await fetch(`${base}/api/models/load`, {
      method: 'POST',
      headers: { 'Content-Type': 'application/json' },
      body: JSON.stringify({ model_id: 'tiny', format: 'onnx' }),
    });
    expect(load.status).toBe(200);
    const { models } = (await (await fetch(`${base}/api/models`)).json()) as {
      models: { id: string; engine?: string; vram_bytes?: number }[];
    };
    const tiny = models.find((model) => model.id === 'tiny');
    expect(tiny).toMatchObject({ state: 'loaded', engine: 'onnx', vram_bytes: expect.any(Number) });
    expect(tiny!.vram_bytes).toBeGreaterThan(0);
  });

  it("streams a greedy chat completion equal, token for token, to ONNX Runtime's decoding of the same graph", async () => {
    const { text, tokens: streamed, finish } = await streamedTokens('Hello!', 16);
    const expected = await expectedTokens(['Hello', '!'], 16);
    expect(streamed.map((t) => t.toString('hex'))).toEqual(expected.map((t) => t.toString('hex')));
    expect(text).toBe(Buffer.concat(expected).toString());
    expect(finish).toBe(expected.length === 16 ? 'length' : 'stop');
  });

  it('serves four concurrent streams, each equal to its own reference', async () => {
    const questions = [['Hello'], ['Hello', '!'], ['!'], ['!', 'Hello']];
    const outcomes = await Promise.all(questions.map((pieces) => streamedTokens(pieces.join(''), 12)));
    for (const [i, pieces] of questions.entries()) {
      const expected = await expectedTokens(pieces, 12);
      expect(outcomes[i]!.tokens.map((t) => t.toString('hex'))).toEqual(expected.map((t) => t.toString('hex')));
    }
  });

  it('stops generating when the client goes away mid-stream', async () => {
    const before = await generatedTokens();
    const controller = new AbortController();
    const stream = await client.chat.completions.create(
      {
        model: 'tiny',
        messages: [{ role: 'user', content: 'Hello!' }],
        stream: true,
        ignore_eos: true,
      } as OpenAI.ChatCompletionCreateParamsStreaming,
      { signal: controller.signal },
    );
    try {
      for await (const chunk of stream) {
        if (chunk.choices[0]?.delta.content) controller.abort();
      }
    } catch {
      // the client's own abort
    }
    await expect.poll(runningRequests, { timeout: 20_000, interval: 50 }).toBe(0);
    // Left alone, the generation would have filled its 2048-token context.
    expect((await generatedTokens()) - before).toBeLessThan(1000);
    const { tokens: after } = await streamedTokens('Hello!', 4);
    expect(after).toHaveLength(4);
  });

  it('answers a load of a graph it cannot drive with the reason', async () => {
    const load = await fetch(`${base}/api/models/load`, {
      method: 'POST',
      headers: { 'Content-Type': 'application/json' },
      body: JSON.stringify({ model_id: 'no-cache', format: 'onnx' }),
    });
    expect(load.status).toBe(400);
    const { error } = (await load.json()) as { error: { code: string; message: string } };
    expect(error.code).toBe('unsupported');
    expect(error.message).toContain('past_key_values.N.key/value');
  });
});
