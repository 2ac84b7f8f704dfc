import { APIError } from 'openai';
import { afterAll, beforeAll, describe, expect, test, vi } from 'vitest';
import { startTestNode, type TestNode } from './testing/test-node.js';

let node: TestNode;

beforeAll(async () => {
  node = await startTestNode();
});

afterAll(async () => {
  await node.close();
});

/** A long streamed chat on the slow echo engine (one token per 20 ms: 1000 tokens would take 20 s). */
function longSlowStream(target: TestNode, signal?: AbortSignal) {
  const body = {
    model: 'echo-slow',
    messages: [{ role: 'user' as const, content: 'Go on' }],
    stream: true as const,
    max_tokens: 1000,
    ignore_eos: true,
  };
  return target.client.chat.completions.create(body, signal ? { signal } : {});
}

async function metric(target: TestNode, line: string): Promise<number | undefined> {
  const text = await (await fetch(`${target.baseUrl}/metrics`)).text();
  const found = text.split('\n').find((l) => l.startsWith(`${line} `));
  return found === undefined ? undefined : Number(found.slice(line.length + 1));
}

describe('health and metrics', () => {
  test('/health says ok while the node serves', async () => {
    const response = await fetch(`${node.baseUrl}/health`);
    expect(response.status).toBe(200);
    expect(await response.json()).toEqual({ status: 'ok' });
  });

  test('/metrics counts requests, tokens, time to first token, and reads VRAM, engines and models', async () => {
    await node.client.chat.completions.create({ model: 'echo', messages: [{ role: 'user', content: 'Count me' }] });
    expect(
      await metric(node, 'llm_node_http_requests_total{method="POST",route="/v1/chat/completions",status="200"}'),
    ).toBeGreaterThanOrEqual(1);
    expect(await metric(node, 'llm_node_generated_tokens_total{model="echo"}')).toBeGreaterThanOrEqual(5);
    expect(await metric(node, 'llm_node_time_to_first_token_seconds_count{model="echo"}')).toBeGreaterThanOrEqual(1);
    expect(await metric(node, 'llm_node_decode_tokens_per_second_count{model="echo"}')).toBeGreaterThanOrEqual(1);
    expect(await metric(node, 'llm_node_vram_limit_bytes')).toBe(16 * 1024 ** 3);
    expect(await metric(node, 'llm_node_vram_total_bytes{device="0"}')).toBe(16 * 1024 ** 3);
    expect(await metric(node, 'llm_node_vram_used_bytes{device="0"}')).toBe(0);
    expect(await metric(node, 'llm_node_engines{engine="echo",status="loaded"}')).toBe(1);
    expect(await metric(node, 'llm_node_model_vram_bytes{model="echo",engine="echo"}')).toBeGreaterThan(0);
    const response = await fetch(`${node.baseUrl}/metrics`);
    expect(response.headers.get('content-type')).toMatch(/^text\/plain/);
  });
});

describe('cancellation', () => {
  test('a client that disconnects mid-stream stops its generation', async () => {
    const controller = new AbortController();
    const stream = await longSlowStream(node, controller.signal);
    let received = 0;
    const reading = (async () => {
      for await (const chunk of stream) {
        if (chunk.choices[0]?.delta.content) received += 1;
        if (received === 3) controller.abort();
      }
    })();
    await reading; // the official client ends an aborted stream quietly
    // The lease is released only once the plugin has returned from engine_generate_stream.
    await vi.waitFor(() => expect(node.registry.models().find((model) => model.id === 'echo-slow')?.activeRequests).toBe(0), {
      timeout: 10_000,
    });
    expect(await metric(node, 'llm_node_active_generations')).toBe(0);
    const generated = await metric(node, 'llm_node_generated_tokens_total{model="echo-slow"}');
    expect(generated).toBeGreaterThanOrEqual(3);
    expect(generated).toBeLessThan(1000);
  });
});

describe('graceful close', () => {
  test('ends an open stream with a shutting_down error event and stops listening', async () => {
    const closing = await startTestNode();
    try {
      const stream = await longSlowStream(closing);
      let closed: Promise<void> | undefined;
      let received = 0;
      const reading = (async () => {
        for await (const chunk of stream) {
          if (chunk.choices[0]?.delta.content) received += 1;
          if (received === 2 && closed === undefined) closed = closing.server.close();
        }
      })();
      const error = await reading.catch((e: unknown) => e);
      expect(error).toBeInstanceOf(APIError);
      expect((error as APIError).code).toBe('shutting_down');
      await closed;
      expect(closing.registry.models().find((model) => model.id === 'echo-slow')?.activeRequests).toBe(0);
      await expect(fetch(`${closing.baseUrl}/health`)).rejects.toThrow();
    } finally {
      await closing.close();
    }
  });

  test('answers a whole completion cut short by shutdown with a 503 shutting_down', async () => {
    const closing = await startTestNode();
    try {
      const body = { model: 'echo-slow', messages: [{ role: 'user', content: 'Go on' }], max_tokens: 1000, ignore_eos: true };
      const pending = closing.post('/v1/chat/completions', body);
      await vi.waitFor(() => expect(closing.registry.models()[0]?.activeRequests).toBe(1), { timeout: 10_000 });
      const closed = closing.server.close();
      const response = await pending;
      expect(response.status).toBe(503);
      expect(await response.json()).toEqual({
        error: { message: 'The server is shutting down', type: 'server_error', code: 'shutting_down' },
      });
      await closed;
    } finally {
      await closing.close();
    }
  });
});
