// Two llm-node processes behind HAProxy, configured with deploy/haproxy/ as shipped, on loopback: the nodes are the
// llm-node command itself, serving the llama_cpp plugin on the cpu; HAProxy is Debian's. One node is stopped with
// SIGTERM in the middle of 32 streams and started again, as a rolling restart does.
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { copyFile, mkdir, mkdtemp, rm } from 'node:fs/promises';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { makeModel } from '@llm-node/engine-llama-cpp';
import OpenAI from 'openai';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';

const repo = fileURLToPath(new URL('../../', import.meta.url));
const cli = fileURLToPath(import.meta.resolve('@llm-node/cli/bin'));
const enginesDir = join(repo, 'engines');
const haproxyInstalled = spawnSync('haproxy', ['-v']).status === 0;
const built = existsSync(join(enginesDir, 'llama_cpp/cpu/manifest.json'));
if (!haproxyInstalled) {
  console.warn('haproxy is not installed here (Debian, Ubuntu: apt-get install haproxy): the load-balancer tests are skipped');
}

interface Node {
  name: string;
  port: number;
  agentPort: number;
  process: ChildProcess;
  exited: Promise<number | null>;
}

let root: string;
let nodes: Node[];
let haproxy: ChildProcess | undefined;
let client: OpenAI;
const lbUrl = () => client.baseURL.replace(/\/v1$/, '');

/** Waits until `done` says yes (at most `timeout` ms). */
function until(done: () => Promise<boolean>, timeout: number, what: string): Promise<void> {
  return vi.waitFor(
    async () => {
      if (!(await done())) throw new Error(`still waiting: ${what}`);
    },
    { timeout, interval: 100 },
  );
}

async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as { port: number };
  await new Promise((resolve) => server.close(resolve));
  return port;
}

/** Starts the llm-node command and waits until it listens. */
async function startNode(name: string, port: number, agentPort: number): Promise<Node> {
  const child = spawn(
    process.execPath,
    [
      cli,
      '--gpu-backend',
      'cpu',
      '--engines-dir',
      enginesDir,
      '--models-dir',
      join(root, name),
      '--port',
      String(port),
      '--agent-port',
      String(agentPort),
      '--context-length',
      '256',
      '--parallel',
      '4',
      '--log-level',
      'warn',
    ],
    { stdio: ['ignore', 'inherit', 'inherit'] },
  );
  const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
  await until(
    () =>
      fetch(`http://127.0.0.1:${port}/health`).then(
        (r) => r.ok,
        () => false,
      ),
    60_000,
    `${name} to listen`,
  );
  return { name, port, agentPort, process: child, exited };
}

async function load(node: Node, model: string): Promise<void> {
  const response = await fetch(`http://127.0.0.1:${node.port}/api/models/load`, {
    method: 'POST',
    headers: { 'Content-Type': 'application/json' },
    body: JSON.stringify({ model_id: model }),
  });
  expect(response.status).toBe(200);
}

/** A short completion through HAProxy: its status and the node that answered. */
async function complete(model = 'tiny'): Promise<{ status: number; servedBy: string | null }> {
  const response = await fetch(`${lbUrl()}/v1/completions`, {
    method: 'POST',
    headers: { 'Content-Type': 'application/json' },
    body: JSON.stringify({ model, prompt: 'Hello', max_tokens: 2 }),
  });
  await response.arrayBuffer();
  return { status: response.status, servedBy: response.headers.get('x-served-by') };
}

/** A streamed chat through HAProxy with the official client, read to its end. */
function stream(firstToken: () => void) {
  return (async () => {
    const { data, response } = await client.chat.completions
      .create({
        model: 'tiny',
        messages: [{ role: 'user', content: 'Tell me a story.' }],
        max_tokens: 24,
        stream: true,
        stream_options: { include_usage: true },
        ignore_eos: true,
      } as never)
      .withResponse();
    let begun = false;
    let tokens: number | undefined;
    let finish: string | null = null;
    for await (const chunk of data as unknown as AsyncIterable<OpenAI.ChatCompletionChunk>) {
      if (chunk.choices[0]?.delta.content && !begun) {
        begun = true;
        firstToken();
      }
      finish = chunk.choices[0]?.finish_reason ?? finish;
      tokens = chunk.usage?.completion_tokens ?? tokens;
    }
    return { servedBy: response.headers.get('x-served-by'), tokens, finish };
  })();
}

beforeAll(async () => {
  if (!haproxyInstalled || !built) return;
  root = await mkdtemp(join(tmpdir(), 'llm-node-haproxy-'));
  // Each node has a models folder of its own, as on two machines; only node2's holds the model `solo`.
  await Promise.all([mkdir(join(root, 'node1')), mkdir(join(root, 'node2'))]);
  await makeModel(join(root, 'node1/tiny.gguf'));
  await copyFile(join(root, 'node1/tiny.gguf'), join(root, 'node2/tiny.gguf'));
  await copyFile(join(root, 'node1/tiny.gguf'), join(root, 'node2/solo.gguf'));
  const [lb, ...ports] = await Promise.all(Array.from({ length: 5 }, freePort));
  nodes = [await startNode('node1', ports[0]!, ports[1]!), await startNode('node2', ports[2]!, ports[3]!)];
  for (const node of nodes) await load(node, 'tiny');
  await load(nodes[1]!, 'solo');
  haproxy = spawn('haproxy', ['-db', '-f', join(repo, 'deploy/haproxy/haproxy.cfg')], {
    stdio: ['ignore', 'inherit', 'inherit'],
    env: {
      ...process.env,
      LB_ADDR: `127.0.0.1:${lb}`,
      NODE1_ADDR: `127.0.0.1:${nodes[0]!.port}`,
      NODE1_AGENT_PORT: String(nodes[0]!.agentPort),
      NODE2_ADDR: `127.0.0.1:${nodes[1]!.port}`,
      NODE2_AGENT_PORT: String(nodes[1]!.agentPort),
    },
  });
  client = new OpenAI({ baseURL: `http://127.0.0.1:${lb}/v1`, apiKey: 'unused', maxRetries: 0 });
  // Until HAProxy has checked both nodes and sends requests to each.
  const seen = new Set<string | null>();
  await until(
    async () => {
      seen.add((await complete()).servedBy);
      return seen.has('node1') && seen.has('node2');
    },
    30_000,
    'both nodes to get requests',
  );
}, 300_000);

afterAll(async () => {
  haproxy?.kill('SIGTERM');
  for (const node of nodes ?? []) node.process.kill('SIGTERM');
  await Promise.all((nodes ?? []).map((node) => node.exited));
  if (root) await rm(root, { recursive: true, force: true });
});

describe.skipIf(!haproxyInstalled || !built)('two nodes behind HAProxy', () => {
  it('routes a model that only one node holds to that node, from the start', async () => {
    // Run first, while HAProxy may not yet have seen that node1 lacks the model: its 404s are retried on node2.
    for (let i = 0; i < 6; i++) expect(await complete('solo')).toEqual({ status: 200, servedBy: 'node2' });
  });

  it('loses no request while one node drains on SIGTERM, finishes its streams, and gets traffic again once restarted', async () => {
    const [node1, node2] = nodes as [Node, Node];
    let started = 0;
    const streams = Array.from({ length: 32 }, () => stream(() => started++));
    await until(async () => started >= 8, 60_000, 'eight streams to begin');

    node1.process.kill('SIGTERM');
    // New requests while node1 drains and after it has gone: HAProxy must place every one of them.
    const during: { status: number; servedBy: string | null }[] = [];
    let stopped = false;
    const exit = node1.exited.then((code) => {
      stopped = true;
      return code;
    });
    while (!stopped) during.push(await complete());
    expect(await exit).toBe(0);

    const finished = await Promise.all(streams);
    // Streams node1 had begun finished there, whole, before it exited.
    expect(finished.filter((s) => s.servedBy === 'node1').length).toBeGreaterThan(0);
    for (const s of finished) expect(s).toMatchObject({ tokens: 24, finish: 'length' });
    expect(during.length).toBeGreaterThan(0);
    for (const request of during) expect(request.status).toBe(200);
    expect(during.at(-1)!.servedBy).toBe('node2');

    // The restarted node rejoins: HAProxy sees it healthy again and sends it requests.
    nodes[0] = await startNode('node1', node1.port, node1.agentPort);
    await load(nodes[0], 'tiny');
    const servedBy = new Set<string | null>();
    await until(
      async () => {
        servedBy.add((await complete()).servedBy);
        return servedBy.has('node1');
      },
      30_000,
      'the restarted node to get requests',
    );
    expect(node2.process.exitCode).toBeNull();
  }, 180_000);
});
