import { connect } from 'node:net';
import { pino } from 'pino';
import { Registry } from '@llm-node/registry';
import { afterEach, describe, expect, test, vi } from 'vitest';
import { createServer } from './index.js';
import { startTestNode, type TestNode } from './testing/test-node.js';

// What load balancers and routers read of a node: readiness, the agent check, the model-server protocol's
// gauges, and a drain that finishes what it started.

const nodes: TestNode[] = [];
afterEach(async () => {
  await Promise.all(nodes.splice(0).map((node) => node.close()));
});

async function start(options: Parameters<typeof startTestNode>[0] = {}): Promise<TestNode> {
  const node = await startTestNode(options);
  nodes.push(node);
  return node;
}

async function health(node: TestNode, path = '/health'): Promise<[number, unknown]> {
  const response = await fetch(`${node.baseUrl}${path}`);
  return [response.status, await response.json()];
}

async function gauges(node: TestNode, model: string): Promise<Record<string, number>> {
  const text = await (await fetch(`${node.baseUrl}/metrics`)).text();
  const found: Record<string, number> = {};
  for (const line of text.split('\n')) {
    const match = /^(vllm:\w+)\{(.*)\} (\S+)$/.exec(line);
    if (match && match[2]!.includes(`model_name="${model}"`)) {
      found[match[1] === 'vllm:cache_config_info' ? `${match[1]}{${match[2]}}` : match[1]!] = Number(match[3]);
    }
  }
  return found;
}

function agentLine(port: number): Promise<string> {
  return new Promise((resolve, reject) => {
    let line = '';
    connect(port, '127.0.0.1')
      .on('data', (data) => (line += data.toString()))
      .on('end', () => resolve(line))
      .on('error', reject);
  });
}

/** A streamed completion of the slow echo engine (20 ms a token), counting the tokens as they come. */
function slowStream(node: TestNode, maxTokens: number) {
  const counted = { tokens: 0 };
  const done = (async () => {
    const stream = await node.client.completions.create({
      model: 'echo-slow',
      prompt: 'one two three',
      stream: true,
      max_tokens: maxTokens,
      ignore_eos: true,
    } as never);
    let text = '';
    for await (const chunk of stream as unknown as AsyncIterable<{ choices: { text: string; finish_reason: string | null }[] }>) {
      if (chunk.choices[0]?.text) counted.tokens += 1;
      text += chunk.choices[0]?.text ?? '';
    }
    return text;
  })();
  done.catch(() => {}); // a test may end the stream before it awaits it
  return { counted, done };
}

describe('readiness', () => {
  test('/health is ok with an engine loaded; /health/live answers while the process runs', async () => {
    const node = await start();
    expect(await health(node)).toEqual([200, { status: 'ok' }]);
    expect(await health(node, '/health/live')).toEqual([200, { status: 'alive' }]);
  });

  test('/health?model= is ok only once that model is loaded, and GET /v1/models/{id} describes it', async () => {
    const node = await start();
    expect(await health(node, '/health?model=echo')).toEqual([503, { status: 'model_not_loaded', model: 'echo' }]);
    expect((await fetch(`${node.baseUrl}/v1/models/echo`)).status).toBe(404);
    await node.post('/api/models/load', { model_id: 'echo' });
    expect(await health(node, '/health?model=echo')).toEqual([200, { status: 'ok', model: 'echo' }]);
    const model = await node.client.models.retrieve('echo');
    expect(model).toMatchObject({ id: 'echo', object: 'model', owned_by: 'echo' });
  });

  test('/health is 503 no_engine on a node where no engine loaded', async () => {
    const registry = await Registry.create({ enginesDirs: [], modelsDir: '.', gpu: { backend: 'cpu', source: 'test', devices: [] } });
    const server = createServer({ registry, logger: pino({ level: 'silent' }) });
    const { port } = await server.listen(0);
    try {
      const response = await fetch(`http://127.0.0.1:${port}/health`);
      expect([response.status, await response.json()]).toEqual([503, { status: 'no_engine' }]);
    } finally {
      await server.close();
      await registry.close();
    }
  });
});

describe("the model-server protocol's gauges", () => {
  test('carry the running requests and KV use the node and its engine know, per model', async () => {
    const node = await start();
    await node.post('/api/models/load', { model_id: 'echo-slow', parallel: 4, context_length: 1000 });
    // Polled: on a busy machine a scrape may come when the engine's stats take longer than the node waits for them.
    await expect
      .poll(() => gauges(node, 'echo-slow'))
      .toEqual({
        'vllm:num_requests_running': 0,
        'vllm:num_requests_waiting': 0,
        'vllm:kv_cache_usage_perc': 0,
        'vllm:cache_config_info{model_name="echo-slow",block_size="1",num_gpu_blocks="4000"}': 1,
      });
    const streams = [0, 1, 2].map(() => slowStream(node, 200));
    await vi.waitFor(() => expect(streams.every((s) => s.counted.tokens >= 5)).toBe(true), { timeout: 10_000 });
    const cellsReceived = () => streams.reduce((sum, s) => sum + 3 + s.counted.tokens, 0);
    const { now, before, after } = await vi.waitFor(async () => {
      const before = cellsReceived();
      const now = await gauges(node, 'echo-slow');
      expect(now['vllm:kv_cache_usage_perc']).toBeDefined();
      return { now, before, after: cellsReceived() };
    });
    expect(now['vllm:num_requests_running']).toBe(3);
    expect(node.registry.models().find((m) => m.id === 'echo-slow')?.activeRequests).toBe(3);
    expect(now['vllm:num_requests_waiting']).toBe(0);
    // Each stream holds its 3 prompt cells and one per token; a token or two each may still be on its way.
    expect(now['vllm:kv_cache_usage_perc']).toBeGreaterThanOrEqual(before / 4000);
    expect(now['vllm:kv_cache_usage_perc']).toBeLessThanOrEqual((after + 3 * 3) / 4000);
    await Promise.all(streams.map((s) => s.done));
    await expect.poll(() => gauges(node, 'echo-slow')).toMatchObject({ 'vllm:num_requests_running': 0, 'vllm:kv_cache_usage_perc': 0 });
  }, 30_000);
});

describe('the agent check', () => {
  test('weighs the node by its load, and says drain while it drains', async () => {
    const node = await start({ agentPort: 0 });
    const port = node.server.agentAddress!.port;
    expect(await agentLine(port)).toBe('ready up 100%\n');
    await node.post('/api/models/load', { model_id: 'echo-slow', parallel: 2 });
    const stream = slowStream(node, 40);
    await vi.waitFor(() => expect(stream.counted.tokens).toBeGreaterThan(0), { timeout: 10_000 });
    expect(await agentLine(port)).toBe('ready up 50%\n'); // one of its two sequences busy
    const closed = node.server.close({ graceMs: 10_000 });
    expect(await agentLine(port)).toBe('drain\n');
    await stream.done;
    await closed;
  });
});

describe('draining', () => {
  test('refuses new requests and reports draining, while the streams in flight finish intact', async () => {
    const node = await start();
    const stream = slowStream(node, 30);
    await vi.waitFor(() => expect(stream.counted.tokens).toBeGreaterThan(0), { timeout: 10_000 });
    const closed = node.server.close({ graceMs: 10_000 });
    expect(await health(node)).toEqual([503, { status: 'draining' }]);
    expect(await health(node, '/health/live')).toEqual([200, { status: 'alive' }]);
    const refused = await node.post('/v1/completions', { model: 'echo', prompt: 'late' });
    expect(refused.status).toBe(503);
    expect(refused.headers.get('connection')).toBe('close');
    expect(await refused.json()).toMatchObject({ error: { code: 'shutting_down' } });
    expect(await stream.done).toBe(`one two three${Array.from({ length: 27 }, (_, i) => ` ${i + 4}`).join('')}`);
    await closed;
  });

  test('ends the streams still open when the grace is over, with the shutting_down event', async () => {
    const node = await start();
    const stream = slowStream(node, 1000);
    await vi.waitFor(() => expect(stream.counted.tokens).toBeGreaterThan(0), { timeout: 10_000 });
    const started = Date.now();
    await node.server.close({ graceMs: 300 });
    expect(Date.now() - started).toBeLessThan(5_000);
    await expect(stream.done).rejects.toMatchObject({ code: 'shutting_down' });
  });

  test('a second close without grace ends the drain at once', async () => {
    const node = await start();
    const stream = slowStream(node, 1000);
    await vi.waitFor(() => expect(stream.counted.tokens).toBeGreaterThan(0), { timeout: 10_000 });
    const first = node.server.close({ graceMs: 60_000 });
    await node.server.close();
    await first;
    await expect(stream.done).rejects.toMatchObject({ code: 'shutting_down' });
  });
});
