import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { buildTestPlugin, installTestPlugin } from '@llm-node/abi-native/testing';
import { writeGgufModel } from '@llm-node/registry/testing';
import { startTestNode, type TestNode } from './testing/test-node.js';

let node: TestNode;

beforeAll(async () => {
  node = await startTestNode({
    async prepare({ enginesDir, modelsDir }) {
      // The model id of the README's curl commands, served by the echo engine.
      await writeGgufModel(join(modelsDir, 'llama-3.2-1b.gguf'), { architecture: 'echo' });
      await installTestPlugin({
        enginesDir,
        plugin: await buildTestPlugin('echo', { defines: { ENGINE_ID: 'echo_cuda' } }),
        backend: 'cuda',
      });
      await writeGgufModel(join(modelsDir, 'slow-load.gguf'), { architecture: 'slow_load' });
      await installTestPlugin({
        enginesDir,
        plugin: await buildTestPlugin('echo', { defines: { ENGINE_ID: 'echo_slow_load', ECHO_LOAD_DELAY_US: '200000' } }),
        manifest: { architectures: ['slow_load'] },
      });
      await installTestPlugin({
        enginesDir,
        plugin: await buildTestPlugin('echo', { defines: { ENGINE_ID: 'future' } }),
        manifest: { abi_version: '2' },
      });
    },
  });
});

afterAll(async () => {
  await node.close();
});

describe("the README's curl commands, with the same bodies", () => {
  test('curl http://localhost:3000/api/engines', async () => {
    const response = await fetch(`${node.baseUrl}/api/engines`);
    expect(response.status).toBe(200);
    const { engines } = (await response.json()) as { engines: Record<string, unknown>[] };
    expect(engines.find((engine) => engine.id === 'echo')).toMatchObject({
      id: 'echo',
      version: '1.0.0',
      gpu_backend: 'cpu',
      architectures: ['echo'],
      status: 'loaded',
    });
  });

  test('curl -X POST /api/models/load with the model_id and format', async () => {
    const response = await fetch(`${node.baseUrl}/api/models/load`, {
      method: 'POST',
      headers: { 'Content-Type': 'application/json' },
      body: `{
    "model_id": "llama-3.2-1b",
    "format": "gguf"
  }`,
    });
    expect(response.status).toBe(200);
    expect(await response.json()).toMatchObject({ status: 'loaded', model: { id: 'llama-3.2-1b', engine: 'echo', format: 'gguf' } });
  });

  test('curl -X POST /v1/chat/completions, streaming', async () => {
    const response = await fetch(`${node.baseUrl}/v1/chat/completions`, {
      method: 'POST',
      headers: { 'Content-Type': 'application/json' },
      body: `{
    "model": "llama-3.2-1b",
    "messages": [{"role": "user", "content": "Hello!"}],
    "stream": true
  }`,
    });
    expect(response.status).toBe(200);
    expect(response.headers.get('content-type')).toBe('text/event-stream; charset=utf-8');
    const events = (await response.text()).split('\n\n');
    expect(events.pop()).toBe('');
    expect(events.every((event) => event.startsWith('data: '))).toBe(true);
    expect(events.at(-1)).toBe('data: [DONE]');
    const chunks = events.slice(0, -1).map((event) => JSON.parse(event.slice('data: '.length)));
    const content = chunks.map((chunk) => chunk.choices[0].delta.content ?? '').join('');
    expect(content).toBe('<|im_start|>user\nHello!<|im_end|>\n<|im_start|>assistant\n');
    expect(chunks.at(-1).choices[0].finish_reason).toBe('stop');
  });
});

describe('engines', () => {
  test('lists loaded, skipped and rejected plugins, with formats, capabilities and errors, and no path of the machine', async () => {
    const response = await fetch(`${node.baseUrl}/api/engines`);
    const text = await response.text();
    expect(text).not.toContain(node.enginesDir);
    const { engines } = JSON.parse(text) as { engines: Record<string, unknown>[] };
    const byId = Object.fromEntries(engines.map((engine) => [engine.id, engine]));
    expect(byId.echo).toMatchObject({
      formats: ['gguf', 'safetensors'],
      capabilities: expect.arrayContaining(['generate_stream', 'model_load', 'thread_safe']),
    });
    expect(byId.echo).not.toHaveProperty('path');
    expect(byId.echo).not.toHaveProperty('error');
    expect(byId.echo_cuda).toMatchObject({
      status: 'skipped',
      gpu_backend: 'cuda',
      error: { type: 'unsupported_error', code: 'backend_not_active' },
    });
    expect(byId.future).toMatchObject({
      status: 'rejected',
      error: { message: 'ABI version mismatch: expected 1, got 2', type: 'plugin_error', code: 'abi_mismatch' },
    });
  });
});

describe('models', () => {
  test('load is idempotent, the catalogue shows what is held, unload frees it', async () => {
    const first = await node.post('/api/models/load', { model_id: 'echo', context_length: 512 });
    const again = await node.post('/api/models/load', { model_id: 'echo' });
    expect(first.status).toBe(200);
    expect(again.status).toBe(200);
    const { models } = (await (await fetch(`${node.baseUrl}/api/models`)).json()) as { models: Record<string, unknown>[] };
    expect(models.find((model) => model.id === 'echo')).toMatchObject({
      state: 'loaded',
      engine: 'echo',
      size_bytes: expect.any(Number),
      estimated_vram_bytes: expect.any(Number),
      format: 'gguf',
      architecture: 'echo',
      context_length: 512,
      vram_bytes: expect.any(Number),
      last_used_at: expect.stringMatching(/^\d{4}-\d\d-\d\dT/),
      active_requests: 0,
    });
    const listed = await node.client.models.list();
    expect(listed.data.map((model) => model.id)).toContain('echo');

    expect((await node.post('/api/models/unload', { model_id: 'echo' })).status).toBe(200);
    // Still in the catalogue, as a model on disk that is not loaded.
    const { models: after } = (await (await fetch(`${node.baseUrl}/api/models`)).json()) as { models: Record<string, unknown>[] };
    const unloaded = after.find((model) => model.id === 'echo');
    expect(unloaded).toMatchObject({ state: 'available', engine: 'echo', format: 'gguf', architecture: 'echo' });
    expect(unloaded).not.toHaveProperty('context_length');
    expect((await node.client.models.list()).data.map((model) => model.id)).not.toContain('echo');
    const again404 = await node.post('/api/models/unload', { model_id: 'echo' });
    expect(again404.status).toBe(404);
    expect(((await again404.json()) as { error: { code: string } }).error.code).toBe('model_not_loaded');
  });

  test('a chat loads its model on first use', async () => {
    await node.client.chat.completions.create({ model: 'echo-slow', messages: [{ role: 'user', content: 'Hi' }], max_tokens: 1 });
    expect(node.registry.models().map((model) => model.id)).toContain('echo-slow');
  });

  test('load and unload bodies are validated like every other', async () => {
    const response = await node.post('/api/models/load', { model_id: 'echo', format: 'ggml' });
    expect(response.status).toBe(400);
    expect(((await response.json()) as { error: { code: string } }).error.code).toBe('invalid_parameter');
    const unknown = await node.post('/api/models/unload', { model: 'echo' });
    expect(((await unknown.json()) as { error: { code: string } }).error.code).toBe('unsupported_parameter');
  });
});

describe('POST /api/models/load with "stream": true', () => {
  const load = (body: object) =>
    fetch(`${node.baseUrl}/api/models/load`, {
      method: 'POST',
      headers: { 'Content-Type': 'application/json' },
      body: JSON.stringify(body),
    });

  test("streams the load's start and the plugin's progress as JSON lines, then the answer a plain load gives", async () => {
    const response = await load({ model_id: 'slow-load', stream: true });
    expect(response.status).toBe(200);
    expect(response.headers.get('content-type')).toBe('application/x-ndjson; charset=utf-8');
    const lines = (await response.text())
      .trimEnd()
      .split('\n')
      .map((line) => JSON.parse(line));
    expect(lines.slice(0, 5)).toEqual([
      { status: 'loading', phase: 'starting', fraction: 0 },
      ...[0, 0.25, 0.5, 0.75].map((fraction) => ({ status: 'loading', phase: 'weights', fraction })),
    ]);
    expect(lines.at(-1)).toMatchObject({ status: 'loaded', model: { id: 'slow-load', engine: 'echo_slow_load' } });
    // Loaded already: the answer at once, as one line.
    const again = (await (await load({ model_id: 'slow-load', stream: true })).text()).trimEnd().split('\n');
    expect(again.map((line) => JSON.parse(line))).toEqual([{ status: 'loaded', model: lines.at(-1).model }]);
  });

  test('keeps the status of a load refused before it began', async () => {
    const response = await load({ model_id: 'no-such-model', stream: true });
    expect(response.status).toBe(404);
    expect(await response.json()).toMatchObject({ error: { code: 'model_not_found' } });
  });
});

describe('POST /api/engines/reload', () => {
  test('says what changed and lists the engines as GET /api/engines does', async () => {
    const response = await fetch(`${node.baseUrl}/api/engines/reload`, { method: 'POST' });
    expect(response.status).toBe(200);
    const body = (await response.json()) as { added: string[]; engines: unknown[] };
    expect(body).toMatchObject({ added: [], replaced: [], removed: [] });
    const listed = (await (await fetch(`${node.baseUrl}/api/engines`)).json()) as { engines: unknown[] };
    expect(body.engines).toEqual(listed.engines);
  });
});
