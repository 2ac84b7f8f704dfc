// The llama_cpp plugin served by a whole node: the llm-node command's own start-up (GPU detection named
// `cpu`, plugin discovery in the repository's engines/ folder, the HTTP server) and the official openai client.
import { existsSync } from 'node:fs';
import { copyFile, mkdtemp, rm, stat, truncate } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

import type { RunningNode } from '@llm-node/cli';
import { makeModel, PLATFORM_RUNTIMES } from '@llm-node/engine-llama-cpp';
import type { GpuBackend } from '@llm-node/gpu-detect';
import { writeGgufModel } from '@llm-node/registry/testing';
import { Ajv } from 'ajv';
import OpenAI from 'openai';
import { startInProcessNode } from './in-process-node.js';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';

// The repository's engines/ folder, where `pnpm build` puts the llama_cpp plugin for this platform.
const enginesDir = fileURLToPath(new URL('../../engines/', import.meta.url));
const backend = PLATFORM_RUNTIMES[`${process.platform}-${process.arch}`]?.[0]?.backend;
const built = backend !== undefined && existsSync(join(enginesDir, 'llama_cpp', backend, 'manifest.json'));
// On CI the plugin this platform should have must be there: its tests fail instead of skipping.
if (!built && backend !== undefined && process.env.CI) throw new Error(`engines/llama_cpp/${backend}/ was not built`);

let modelsDir: string;
let node: RunningNode;
let base: string;
let client: OpenAI;

beforeAll(async () => {
  if (!built) return;
  modelsDir = await mkdtemp(join(tmpdir(), 'llama-cpp-node-'));
  await makeModel(join(modelsDir, 'tiny.gguf'));
  // A model of an architecture the plugin's manifest does not list: its weights are never read.
  await writeGgufModel(join(modelsDir, 'nemotron-mini.gguf'), { architecture: 'nemotron' });
  // A download cut short: the header is whole, the tensor data is not.
  await copyFile(join(modelsDir, 'tiny.gguf'), join(modelsDir, 'cut-short.gguf'));
  await truncate(join(modelsDir, 'cut-short.gguf'), Math.floor((await stat(join(modelsDir, 'tiny.gguf'))).size * 0.6));
  // Metadata that llama.cpp's loader asserts on, aborting its process: the registry refuses these itself.
  await makeModel(join(modelsDir, 'no-layers.gguf'), {}, { metadata: { 'llama.block_count': 0 } });
  await makeModel(join(modelsDir, 'too-many-layers.gguf'), {}, { metadata: { 'llama.block_count': 513 } });
  await makeModel(join(modelsDir, 'experts-used.gguf'), {}, { metadata: { 'llama.expert_used_count': 2 } });
  // The same weights pooled by their first token (CLS), as the GGUF's metadata says.
  await makeModel(join(modelsDir, 'tiny-cls.gguf'), {}, { metadata: { 'llama.pooling_type': 2 } });
  // One the registry does not check: it aborts the engine host, which restarts.
  await makeModel(join(modelsDir, 'bad-rope.gguf'), {}, { metadata: { 'llama.rope.scaling.type': 'sideways' } });

  node = await startInProcessNode({ enginesDir, modelsDir, gpuBackend: backend as GpuBackend, contextLength: 512 });
  base = `http://127.0.0.1:${node.address.port}`;
  client = new OpenAI({ baseURL: `${base}/v1`, apiKey: 'unused' });
}, 120_000);

afterAll(async () => {
  await node?.close();
  if (modelsDir) await rm(modelsDir, { recursive: true, force: true });
});

const post = (path: string, body: unknown) =>
  fetch(`${base}${path}`, { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify(body) });

async function chat(content: string, options: Partial<OpenAI.ChatCompletionCreateParamsNonStreaming> = {}): Promise<string> {
  const completion = await client.chat.completions.create({
    model: 'tiny',
    messages: [{ role: 'user', content }],
    max_tokens: 12,
    temperature: 0,
    ...options,
  });
  return completion.choices[0]!.message.content ?? '';
}

describe.skipIf(!built)('the llama_cpp plugin behind llm-node', () => {
  it("is loaded from engines/llama_cpp and loads a model with the README's request", async () => {
    const engines = (await (await fetch(`${base}/api/engines`)).json()) as { engines: { id: string; status: string }[] };
    expect(engines.engines).toContainEqual(expect.objectContaining({ id: 'llama_cpp', status: 'loaded' }));

    const load = await post('/api/models/load', { model_id: 'tiny', format: 'gguf' });
    expect(load.status).toBe(200);
    const { models } = (await (await fetch(`${base}/api/models`)).json()) as {
      models: { id: string; state: string; vram_bytes?: number }[];
    };
    const tiny = models.find((model) => model.id === 'tiny');
    expect(tiny).toMatchObject({ state: 'loaded', engine: 'llama_cpp', vram_bytes: expect.any(Number) });
    expect(tiny!.vram_bytes).toBeGreaterThan(0);
    expect(models.filter((model) => model.state === 'loaded')).toHaveLength(1);
  });

  it('streams a chat completion: the role first, then the tokens, then the finish reason', async () => {
    const stream = await client.chat.completions.create({
      model: 'tiny',
      messages: [{ role: 'user', content: 'Hello!' }],
      max_tokens: 8,
      stream: true,
    });
    const chunks = [];
    for await (const chunk of stream) chunks.push(chunk);
    expect(chunks[0]!.choices[0]!.delta.role).toBe('assistant');
    const tokens = chunks.filter((c) => c.choices[0]?.delta.content);
    expect(tokens.length).toBeGreaterThan(0);
    expect(tokens.length).toBeLessThanOrEqual(8);
    expect(chunks.at(-1)!.choices[0]!.finish_reason).toBe('length');
  });

  describe('structured output: random weights, so validity comes from the grammar alone', () => {
    const person = {
      type: 'object',
      properties: {
        name: { type: 'string', minLength: 1, maxLength: 12 },
        age: { type: 'integer', minimum: 0, maximum: 150 },
        tags: { type: 'array', items: { enum: ['red', 'green'] }, maxItems: 3 },
      },
      required: ['name', 'age', 'tags'],
      additionalProperties: false,
    };
    const validPerson = new Ajv().compile(person);
    const format = { type: 'json_schema' as const, json_schema: { name: 'person', schema: person, strict: true } };

    it.each([0, 1])('answers a json_schema request at temperature %d with JSON the schema accepts', async (temperature) => {
      const completion = await client.chat.completions.create({
        model: 'tiny',
        messages: [{ role: 'user', content: 'Who are you?' }],
        response_format: format,
        temperature,
        seed: 7,
        max_tokens: 400,
      });
      expect(completion.choices[0]!.finish_reason).toBe('stop');
      const answer = JSON.parse(completion.choices[0]!.message.content!);
      expect(validPerson(answer), JSON.stringify(validPerson.errors)).toBe(true);
    });

    it('streams JSON the schema accepts, piece by piece', async () => {
      const stream = await client.chat.completions.create({
        model: 'tiny',
        messages: [{ role: 'user', content: 'Who are you?' }],
        response_format: format,
        max_tokens: 400,
        stream: true,
      });
      let text = '';
      for await (const chunk of stream) text += chunk.choices[0]?.delta.content ?? '';
      expect(validPerson(JSON.parse(text))).toBe(true);
    });

    it('answers json_object with a JSON object, on completions too', async () => {
      // Any object: no bound on its strings, so random weights may run to max_tokens. What ends is whole.
      for (const seed of [1, 2, 3]) {
        const completion = await client.completions.create({
          model: 'tiny',
          prompt: 'Some JSON:',
          max_tokens: 64,
          seed,
          // @ts-expect-error: llama.cpp's server takes response_format on completions too, and so does the node
          response_format: { type: 'json_object' },
        });
        const { text, finish_reason } = completion.choices[0]!;
        expect(text.trimStart().startsWith('{')).toBe(true);
        if (finish_reason === 'stop') expect(JSON.parse(text)).toBeTypeOf('object');
      }
    });

    it('refuses a schema it cannot enforce with a 400 that names what', async () => {
      const refused = client.chat.completions.create({
        model: 'tiny',
        messages: [{ role: 'user', content: 'x' }],
        response_format: { type: 'json_schema', json_schema: { name: 'code', schema: { type: 'string', pattern: 'ab+' } } },
      });
      await expect(refused).rejects.toMatchObject({ status: 400, message: expect.stringContaining('pattern ab+ is not supported') });
    });
  });

  describe('tool calls forced by tool_choice: random weights, so a well-formed call comes from the grammar alone', () => {
    const tools = [
      {
        type: 'function' as const,
        function: {
          name: 'get_weather',
          parameters: {
            type: 'object',
            properties: { city: { type: 'string', maxLength: 20 }, unit: { enum: ['C', 'F'] } },
            required: ['city', 'unit'],
            additionalProperties: false,
          },
        },
      },
      {
        type: 'function' as const,
        function: {
          name: 'add',
          parameters: {
            type: 'object',
            properties: { a: { type: 'integer' }, b: { type: 'integer' } },
            required: ['a', 'b'],
            additionalProperties: false,
          },
        },
      },
    ];
    const validArguments = Object.fromEntries(tools.map((tool) => [tool.function.name, new Ajv().compile(tool.function.parameters)]));
    const messages = [{ role: 'user' as const, content: 'What is the weather in Paris?' }];

    it('answers tool_choice required with one well-formed call to one of the tools', async () => {
      const completion = await client.chat.completions.create({
        model: 'tiny',
        messages,
        tools,
        tool_choice: 'required',
        parallel_tool_calls: false,
        max_tokens: 300,
        seed: 5,
      });
      const choice = completion.choices[0]!;
      expect(choice.finish_reason).toBe('tool_calls');
      expect(choice.message.content).toBeNull();
      expect(choice.message.tool_calls).toHaveLength(1);
      const call = choice.message.tool_calls![0]!;
      expect(call).toMatchObject({ type: 'function', id: expect.stringMatching(/^call_/) });
      if (call.type !== 'function') throw new Error('not a function call');
      const check = validArguments[call.function.name]!;
      expect(check(JSON.parse(call.function.arguments)), JSON.stringify(check.errors)).toBe(true);
    });

    it('streams a call to the function tool_choice names, and takes the tool result back', async () => {
      const stream = await client.chat.completions.create({
        model: 'tiny',
        messages,
        tools,
        tool_choice: { type: 'function', function: { name: 'add' } },
        parallel_tool_calls: false, // the Llama 3.2 template takes back one call at a time
        max_tokens: 300,
        stream: true,
      });
      const calls: { id?: string; name?: string; arguments: string }[] = [];
      let finish: string | null = null;
      for await (const chunk of stream) {
        for (const delta of chunk.choices[0]?.delta.tool_calls ?? []) {
          calls[delta.index] ??= { arguments: '' };
          Object.assign(calls[delta.index]!, delta.id ? { id: delta.id } : {}, delta.function?.name ? { name: delta.function.name } : {});
          calls[delta.index]!.arguments += delta.function?.arguments ?? '';
        }
        finish = chunk.choices[0]?.finish_reason ?? finish;
      }
      expect(finish).toBe('tool_calls');
      expect(calls).toHaveLength(1);
      expect(calls[0]!.name).toBe('add');
      expect(validArguments.add!(JSON.parse(calls[0]!.arguments))).toBe(true);
      const answer = await client.chat.completions.create({
        model: 'tiny',
        messages: [
          ...messages,
          {
            role: 'assistant',
            content: null,
            tool_calls: calls.map((call) => ({
              id: call.id!,
              type: 'function',
              function: { name: call.name!, arguments: call.arguments },
            })),
          },
          ...calls.map((call) => ({ role: 'tool' as const, tool_call_id: call.id!, content: '42' })),
        ],
        tools,
        max_tokens: 4,
      });
      expect(answer.choices[0]!.finish_reason).toBe('length');
    });
  });

  it('biases the logits it is told to: +100 forces a token, -100 bans it', async () => {
    const tokens = async (logit_bias: Record<string, number>) => {
      const completion = await client.chat.completions.create({
        model: 'tiny',
        messages: [{ role: 'user', content: 'Hello!' }],
        temperature: 0,
        max_tokens: 6,
        logprobs: true,
        logit_bias,
      });
      return completion.choices[0]!.logprobs!.content!.map((t) => t.token);
    };
    const forced = await tokens({ '1000': 100 });
    expect(new Set(forced).size).toBe(1);
    expect(await tokens({ '1000': -100 })).not.toContain(forced[0]);
    await expect(tokens({ '99999999': 1 })).rejects.toMatchObject({
      status: 400,
      message: expect.stringContaining('outside the vocabulary'),
    });
  });

  it('gives the same tokens at temperature 0 twice', async () => {
    const first = await chat('Tell me about the sea.');
    expect(first.length).toBeGreaterThan(0);
    expect(await chat('Tell me about the sea.')).toBe(first);
  });

  it('answers concurrent requests each as it answers them alone', async () => {
    const prompts = ['one', 'two two', 'three three three', 'four', 'five five'];
    const alone = [];
    for (const p of prompts) alone.push(await chat(p));
    expect(await Promise.all(prompts.map((p) => chat(p)))).toEqual(alone);
  });

  it("reports the engine's running and waiting requests and KV use as the model-server protocol's gauges", async () => {
    const gauges = async () => {
      const found: Record<string, number> = {};
      for (const line of (await (await fetch(`${base}/metrics`)).text()).split('\n')) {
        const match = /^(vllm:\w+)\{model_name="two-at-once"(.*)\} (\S+)$/.exec(line);
        if (match) found[`${match[1]}${match[2]}`] = Number(match[3]);
      }
      return found;
    };
    await copyFile(join(modelsDir, 'tiny.gguf'), join(modelsDir, 'two-at-once.gguf'));
    expect((await post('/api/models/load', { model_id: 'two-at-once', parallel: 2 })).status).toBe(200);
    // Polled: on a busy machine a scrape may come when the engine's stats take longer than the node waits for them.
    await expect.poll(gauges, { timeout: 10_000 }).toEqual({
      'vllm:num_requests_running': 0,
      'vllm:num_requests_waiting': 0,
      'vllm:kv_cache_usage_perc': 0,
      'vllm:cache_config_info,block_size="1",num_gpu_blocks="1024"': 1, // two sequences of 512 cells
    });
    const streams = Array.from({ length: 4 }, () =>
      client.completions.create({
        model: 'two-at-once',
        prompt: 'Once upon a time',
        max_tokens: 200,
        stream: true,
        ignore_eos: true,
      } as never),
    );
    // Two sequences decode; the other two requests wait in the engine for one to free up.
    const busy = await vi.waitFor(
      async () => {
        const found = await gauges();
        expect(found).toMatchObject({ 'vllm:num_requests_running': 2, 'vllm:num_requests_waiting': 2 });
        expect(found['vllm:kv_cache_usage_perc']).toBeGreaterThan(0);
        return found;
      },
      { timeout: 20_000, interval: 20 },
    );
    expect(busy['vllm:kv_cache_usage_perc']).toBeLessThanOrEqual((2 * (4 + 200)) / 1024);
    for (const stream of await Promise.all(streams)) for await (const _ of stream as unknown as AsyncIterable<unknown>);
    await expect
      .poll(gauges, { timeout: 10_000 })
      .toMatchObject({ 'vllm:num_requests_running': 0, 'vllm:num_requests_waiting': 0, 'vllm:kv_cache_usage_perc': 0 });
    expect((await post('/api/models/unload', { model_id: 'two-at-once' })).status).toBe(200);
  });

  it('stops a generation whose client went away', async () => {
    const generated = async () => {
      const metrics = await (await fetch(`${base}/metrics`)).text();
      return Number(/^llm_node_generated_tokens_total\{model="tiny"\} (\d+)/m.exec(metrics)?.[1] ?? 0);
    };
    const before = await generated();
    const stream = await client.chat.completions.create({
      model: 'tiny',
      messages: [{ role: 'user', content: 'Go on forever.' }],
      max_tokens: 480,
      stream: true,
      ignore_eos: true,
    } as OpenAI.ChatCompletionCreateParamsStreaming);
    for await (const chunk of stream) if (chunk.choices[0]?.delta.content) break; // closes the connection
    const active = async () =>
      ((await (await fetch(`${base}/api/models`)).json()) as { models: { id: string; active_requests: number }[] }).models.find(
        (model) => model.id === 'tiny',
      )!.active_requests;
    await expect.poll(active, { timeout: 10_000 }).toBe(0);
    // It ended at the next token after the disconnect, far short of its 480.
    expect((await generated()) - before).toBeLessThan(240);
  });

  it('refuses a model of another architecture before the engine sees it, with the documented message', async () => {
    const response = await post('/api/models/load', { model_id: 'nemotron-mini', format: 'gguf' });
    expect(response.status).toBe(400);
    expect(await response.json()).toEqual({
      error: {
        message: "Architecture 'nemotron' not supported by plugin 'llama_cpp'",
        type: 'unsupported_error',
        code: 'architecture_mismatch',
      },
    });
  });

  it('answers a truncated GGUF with a clean error and goes on serving', async () => {
    const response = await post('/api/models/load', { model_id: 'cut-short', format: 'gguf' });
    expect(response.status).toBe(422);
    expect(((await response.json()) as { error: { code: string } }).error.code).toBe('model_corrupt');
    expect((await chat('Still there?')).length).toBeGreaterThan(0);
  });

  it.each(['no-layers', 'too-many-layers', 'experts-used'])(
    'refuses %s.gguf with 422 model_corrupt naming the key, and serves on',
    async (model) => {
      const response = await post('/api/models/load', { model_id: model, format: 'gguf' });
      expect(response.status).toBe(422);
      expect(await response.json()).toMatchObject({
        error: { code: 'model_corrupt', message: expect.stringMatching(/llama\.(block_count|expert_used_count)/) },
      });
      expect((await chat('Still there?')).length).toBeGreaterThan(0);
    },
  );

  it("costs one engine restart for a model that aborts llama.cpp's loader, and serves on", async () => {
    const response = await post('/api/models/load', { model_id: 'bad-rope', format: 'gguf' });
    expect(response.status).toBe(502);
    expect(await response.json()).toMatchObject({
      error: { code: 'engine_crashed', message: expect.stringMatching(process.platform === 'win32' ? /exited with status/ : /SIGABRT/) },
    });
    expect((await chat('Still there?')).length).toBeGreaterThan(0); // the engine restarted and loaded tiny again
  });

  it('refuses prompts dense with special tokens at once, eight at a time, while /health answers', async () => {
    const dense = '<|eot_id|>x'.repeat(30_000); // 60,000 tokens: far over the context, found out quickly
    const requests = Array.from({ length: 8 }, () => post('/v1/completions', { model: 'tiny', prompt: dense, max_tokens: 1 }));
    expect((await fetch(`${base}/health`)).status).toBe(200);
    for (const response of await Promise.all(requests)) {
      expect(response.status).toBe(400);
      expect(await response.json()).toMatchObject({
        error: { code: 'context_length_exceeded', message: expect.stringContaining('60001 tokens') },
      });
    }
  });

  describe('embeddings', () => {
    const norm = (vector: number[]) => Math.hypot(...vector);

    it('gives unit vectors of the model width, the same for the same input, through the official client', async () => {
      const response = await client.embeddings.create({ model: 'tiny', input: ['Hello world', 'Hello world', 'Something else'] });
      expect(response.data.map((item) => item.index)).toEqual([0, 1, 2]);
      const [first, again, other] = response.data.map((item) => item.embedding);
      expect(first).toHaveLength(64);
      expect(norm(first!)).toBeCloseTo(1, 5);
      expect(again).toEqual(first);
      expect(other).not.toEqual(first);
      expect(response.usage.prompt_tokens).toBeGreaterThanOrEqual(6);

      // The client asks for base64 unless told otherwise; floats give the same numbers.
      const floats = await client.embeddings.create({ model: 'tiny', input: 'Hello world', encoding_format: 'float' });
      expect(floats.data[0]!.embedding).toEqual(first);
    });

    it('cuts to `dimensions` and scales the cut to length 1; more than the model has is a 400', async () => {
      const full = (await client.embeddings.create({ model: 'tiny', input: 'Hello world' })).data[0]!.embedding;
      const cut = (await client.embeddings.create({ model: 'tiny', input: 'Hello world', dimensions: 16 })).data[0]!.embedding;
      expect(cut).toHaveLength(16);
      expect(norm(cut)).toBeCloseTo(1, 5);
      const scale = norm(full.slice(0, 16));
      for (const [i, x] of cut.entries()) expect(x).toBeCloseTo(full[i]! / scale, 5);

      const tooMany = await post('/v1/embeddings', { model: 'tiny', input: 'Hello', dimensions: 65 });
      expect(tooMany.status).toBe(400);
      expect(await tooMany.json()).toMatchObject({ error: { code: 'invalid_parameter', param: 'dimensions' } });
    });

    it("pools as the model's metadata says: by the first token, every input embeds alike in a causal model", async () => {
      const cls = await client.embeddings.create({ model: 'tiny-cls', input: ['Hello world', 'Something else entirely'] });
      expect(cls.data[1]!.embedding).toEqual(cls.data[0]!.embedding); // the BOS token's state, which sees only itself
      const mean = await client.embeddings.create({ model: 'tiny', input: ['Hello world', 'Something else entirely'] });
      expect(mean.data[1]!.embedding).not.toEqual(mean.data[0]!.embedding);
      expect((await post('/api/models/unload', { model_id: 'tiny-cls' })).status).toBe(200);
    });

    it('refuses token ids, and empty input, with a 400 naming `input`', async () => {
      for (const input of [[1, 2, 3], '', []]) {
        const response = await post('/v1/embeddings', { model: 'tiny', input });
        expect(response.status).toBe(400);
        expect(await response.json()).toMatchObject({ error: { param: 'input' } });
      }
    });
  });

  it("frees the model's memory on unload", async () => {
    const response = await post('/api/models/unload', { model_id: 'tiny' });
    expect(response.status).toBe(200);
    const { models } = (await (await fetch(`${base}/api/models`)).json()) as { models: { id: string; state: string }[] };
    expect(models.filter((model) => model.state !== 'available' && model.state !== 'unusable')).toEqual([]);
    expect(models.find((model) => model.id === 'tiny')).toMatchObject({ state: 'available', engine: 'llama_cpp' });
    const metrics = await (await fetch(`${base}/metrics`)).text();
    expect(metrics.split('\n').filter((line) => line.startsWith('llm_node_model_vram_bytes{'))).toEqual([]);
  });
});
