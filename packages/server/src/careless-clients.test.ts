import { request as httpRequest } from 'node:http';
import { connect, type Socket } from 'node:net';
import { gzipSync } from 'node:zlib';
import { join } from 'node:path';
import { buildTestPlugin, installTestPlugin } from '@llm-node/abi-native/testing';
import { writeGgufModel } from '@llm-node/registry/testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { capturedLogger, startTestNode, type TestNode } from './testing/test-node.js';

// Clients that are careless or hostile while sending well-formed requests: each gets a clear answer or its
// stream ended, and nothing they do holds the node or its other clients up.

const { logger, lines: logLines } = capturedLogger();
let node: TestNode;
let port: number;

beforeAll(async () => {
  node = await startTestNode({
    maxConnections: 50,
    allowedHosts: ['llm.internal', '.corp.example'],
    logger,
    prepare: async ({ enginesDir, modelsDir }) => {
      // An engine whose loads take a second and a half: a load that can be walked away from.
      await installTestPlugin({
        enginesDir,
        plugin: await buildTestPlugin('echo', { defines: { ECHO_LOAD_DELAY_US: 1_500_000, ENGINE_ID: 'echo_slow_load' } }),
        manifest: { architectures: ['echo_slow_load'] },
      });
      await writeGgufModel(join(modelsDir, 'slow-load.gguf'), { architecture: 'echo_slow_load' });
      await writeGgufModel(join(modelsDir, 'endless-template.gguf'), {
        architecture: 'echo',
        chatTemplate: '{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}',
      });
      await writeGgufModel(join(modelsDir, 'hungry-template.gguf'), {
        architecture: 'echo',
        chatTemplate: "{% set a = ['xxxxxxxx'] %}{% for i in range(40) %}{% set a = a + a %}{% endfor %}{{ a | length }}",
      });
    },
  });
  port = Number(new URL(node.baseUrl).port);
}, 120_000);

afterAll(() => node?.close());

const activeRequests = async (model: string) => node.registry.models().find((m) => m.id === model)?.activeRequests;
const generated = async (model: string) => {
  const metrics = await (await fetch(`${node.baseUrl}/metrics`)).text();
  return Number(new RegExp(`^llm_node_generated_tokens_total\\{model="${model}"\\} (\\d+)`, 'm').exec(metrics)?.[1] ?? 0);
};

/** A raw request on its own socket; the caller decides whether to read the answer. */
function rawRequest(head: string, body = ''): Socket {
  const socket = connect(port, '127.0.0.1');
  socket.write(`${head}\r\nContent-Length: ${Buffer.byteLength(body)}\r\n\r\n${body}`);
  return socket;
}

async function health(): Promise<number> {
  return (await fetch(`${node.baseUrl}/health`)).status;
}

describe('a client that leaves or stops reading', () => {
  it('leaves no generation behind when it goes while its model loads', async () => {
    const controller = new AbortController();
    const request = fetch(`${node.baseUrl}/v1/completions`, {
      method: 'POST',
      headers: { 'Content-Type': 'application/json' },
      body: JSON.stringify({ model: 'slow-load', prompt: 'go on', stream: true, ignore_eos: true, max_tokens: 1_000_000 }),
      signal: controller.signal,
    }).catch(() => null);
    await new Promise((resolve) => setTimeout(resolve, 200));
    controller.abort();
    await request;
    await expect.poll(() => node.registry.models().some((m) => m.id === 'slow-load'), { timeout: 30_000 }).toBe(true);
    await new Promise((resolve) => setTimeout(resolve, 300));
    expect(await activeRequests('slow-load')).toBe(0);
    expect(await generated('slow-load')).toBe(0);
    // Its log line names the model, and its status says the client went away.
    await expect
      .poll(() => logLines.find((l) => l.msg === 'request' && l.url === '/v1/completions' && l.model === 'slow-load'))
      .toMatchObject({ status: 499, clientClosed: true });
  }, 60_000);

  it('ends the stream of a client that stops reading instead of piling its tokens up', async () => {
    const body = JSON.stringify({ model: 'echo', prompt: 'flood', stream: true, ignore_eos: true, max_tokens: 100_000_000 });
    await node.post('/api/models/load', { model_id: 'echo', context_length: 200_000_000 });
    const socket = rawRequest(`POST /v1/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json`, body);
    socket.pause(); // reads nothing, ever
    await expect
      .poll(() => logLines.some((l) => l.msg === 'the client stopped reading its stream; ended it'), { timeout: 60_000 })
      .toBe(true);
    await expect.poll(() => activeRequests('echo'), { timeout: 20_000 }).toBe(0);
    expect(await health()).toBe(200);
    socket.destroy();
  }, 90_000);
});

describe('a model whose chat template runs away', () => {
  it.each([
    ['loops for ever', 'endless-template', /took longer than 2 s/],
    ['builds a list without end', 'hungry-template', /chat template (took longer|failed)/],
  ])(
    'refuses a template that %s with 422, while /health and other requests are answered',
    async (_what, model, message) => {
      const chat = node.post('/v1/chat/completions', { model, messages: [{ role: 'user', content: 'hi' }] });
      for (let i = 0; i < 5; i++) {
        const started = performance.now();
        expect(await health()).toBe(200);
        // Far below the template's 2 s limit: /health is not waiting behind the template.
        expect(performance.now() - started).toBeLessThan(500);
        expect((await node.post('/v1/completions', { model: 'echo', prompt: 'still here', max_tokens: 2 })).status).toBe(200);
        await new Promise((resolve) => setTimeout(resolve, 100));
      }
      const response = await chat;
      expect(response.status).toBe(422);
      expect(await response.json()).toMatchObject({ error: { code: 'chat_template_error', message: expect.stringMatching(message) } });
    },
    30_000,
  );
});

describe('bodies and headers the node cannot read', () => {
  const post = (headers: Record<string, string>, body: Buffer) =>
    fetch(`${node.baseUrl}/v1/completions`, { method: 'POST', headers: { 'Content-Type': 'application/json', ...headers }, body });

  it.each([
    ['garbage gzip', 'gzip', Buffer.from('not gzip at all')],
    ['cut-short gzip', 'gzip', gzipSync(Buffer.from(JSON.stringify({ model: 'echo', prompt: 'x'.repeat(1000) }))).subarray(0, 20)],
    ['bad deflate', 'deflate', Buffer.from('nope')],
  ])('answers %s with 400 invalid_body', async (_what, encoding, body) => {
    const response = await post({ 'Content-Encoding': encoding }, body);
    expect(response.status).toBe(400);
    expect(await response.json()).toMatchObject({ error: { code: 'invalid_body', type: 'invalid_request_error' } });
  });

  it('answers an encoding it does not read with 415', async () => {
    const response = await post({ 'Content-Encoding': 'zstd' }, Buffer.from('x'));
    expect(response.status).toBe(415);
    expect(await response.json()).toMatchObject({ error: { code: 'unsupported_encoding' } });
  });

  it('answers headers too large with 431 in the error envelope', async () => {
    const answer = await new Promise<{ status: number; body: string }>((resolve, reject) => {
      const req = httpRequest({ host: '127.0.0.1', port, path: '/health', headers: { 'X-Padding': 'x'.repeat(64 * 1024) } }, (res) => {
        let body = '';
        res.on('data', (d) => (body += d));
        res.on('end', () => resolve({ status: res.statusCode!, body }));
      });
      req.on('error', reject);
      req.end();
    });
    expect(answer.status).toBe(431);
    expect(JSON.parse(answer.body)).toMatchObject({ error: { code: 'headers_too_large' } });
  });
});

describe('the Host header', () => {
  const withHost = (host: string) =>
    new Promise<number>((resolve, reject) => {
      const req = httpRequest({ host: '127.0.0.1', port, path: '/v1/models', headers: { Host: host } }, (res) => {
        res.resume();
        res.on('end', () => resolve(res.statusCode!));
      });
      req.on('error', reject);
      req.end();
    });

  it('refuses a name the operator did not allow, as a DNS-rebinding page would send it', async () => {
    expect(await withHost('attacker.example')).toBe(403);
    expect(await withHost('attacker.example:3000')).toBe(403);
  });

  it("serves a request without a Host header, as a load balancer's HTTP/1.0 health check sends it", async () => {
    const status = await new Promise<string>((resolve, reject) => {
      const socket = connect(port, '127.0.0.1', () => socket.write('GET /health HTTP/1.0\r\n\r\n'));
      let answer = '';
      socket.on('data', (data) => (answer += data.toString()));
      socket.on('end', () => resolve(answer.split('\r\n')[0]!));
      socket.on('error', reject);
    });
    expect(status).toBe('HTTP/1.1 200 OK');
  });

  it('serves IP addresses, localhost and the names allowed', async () => {
    for (const host of [
      `127.0.0.1:${port}`,
      '[::1]:3000',
      'localhost:3000',
      'app.localhost',
      'llm.internal',
      'gpu1.corp.example',
      'corp.example',
    ]) {
      expect(await withHost(host), host).toBe(200);
    }
  });
});

describe('a crowd of idle connections', () => {
  it('keeps /health and new clients answered past the connection cap', async () => {
    const sockets = await Promise.all(
      Array.from(
        { length: 200 },
        () =>
          new Promise<Socket>((resolve) => {
            const socket = connect(port, '127.0.0.1', () => resolve(socket));
            socket.on('error', () => {});
          }),
      ),
    );
    try {
      expect(await health()).toBe(200);
      expect((await node.post('/v1/completions', { model: 'echo', prompt: 'through the crowd', max_tokens: 3 })).status).toBe(200);
      const open = sockets.filter((s) => !s.destroyed && s.readyState === 'open').length;
      await expect.poll(() => sockets.filter((s) => s.closed).length).toBeGreaterThanOrEqual(150); // the oldest idle ones were closed
      expect(open).toBeGreaterThan(0);
    } finally {
      for (const socket of sockets) socket.destroy();
    }
  });
});
