// Two llm-node processes behind HAProxy (deploy/haproxy/haproxy.cfg as shipped) against one node alone, on this
// machine's loopback, the llama_cpp cpu plugin on the made test model, rounds interleaved:
//
//   pnpm build && node bench/haproxy/run.mjs [rounds=3] [concurrency=16]
//
// 1. Aggregate tokens/s of `concurrency` streamed chats (128 tokens each) by the shared load client
//    (../shared/bench/oai_load.py): one node alone, then two nodes through HAProxy. Two nodes reach twice one
//    node's rate only where the machine has room for both (cores, or a GPU each); each node's engine uses every
//    physical core, so on a machine with few cores the two share them.
// 2. The latency HAProxy adds per request: 2,000 sequential GET /v1/models, and 200 one-token completions,
//    straight to the two nodes in turn and through HAProxy to the same nodes, on kept-alive connections.
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { mkdtemp, rm } from 'node:fs/promises';
import http from 'node:http';
import { createServer } from 'node:net';
import os from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { performance } from 'node:perf_hooks';
import { makeModel } from '@llm-node/engine-llama-cpp';
import { checkLoadClient, log, median, oaiLoad, repo } from '../lib/llama-cpp.mjs';

const ROUNDS = Number(process.argv[2] ?? 3);
const CONCURRENCY = Number(process.argv[3] ?? 16);
const cli = fileURLToPath(import.meta.resolve('@llm-node/cli/bin'));
checkLoadClient();

const running = new Set(); // every child started, stopped however the run ends
const root = await mkdtemp(join(os.tmpdir(), 'llm-node-bench-haproxy-'));
await makeModel(join(root, 'tiny.gguf'));

async function freePort() {
  const server = createServer().listen(0, '127.0.0.1');
  await once(server, 'listening');
  const { port } = server.address();
  server.close();
  return port;
}

/** Remembers a child until it exits; the function stops it. */
function track(child) {
  const exited = once(child, 'exit');
  running.add(child);
  exited.then(() => running.delete(child));
  return () => {
    child.kill('SIGTERM');
    return exited;
  };
}

async function waitFor(url) {
  for (;;) {
    if (
      await fetch(url).then(
        (r) => r.ok,
        () => false,
      )
    )
      return;
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

/** The llm-node command on a free port, with the test model loaded. */
async function startNode() {
  const [port, agentPort] = [await freePort(), await freePort()];
  const child = spawn(
    process.execPath,
    [
      cli,
      '--gpu-backend',
      'cpu',
      '--models-dir',
      root,
      '--port',
      String(port),
      '--agent-port',
      String(agentPort),
      '--parallel',
      String(CONCURRENCY),
      '--context-length',
      '1024',
      '--log-level',
      'error',
    ],
    { stdio: ['ignore', 'ignore', 'inherit'] },
  );
  const url = `http://127.0.0.1:${port}`;
  const stop = track(child);
  await waitFor(`${url}/health`);
  const loaded = await fetch(`${url}/api/models/load`, {
    method: 'POST',
    headers: { 'Content-Type': 'application/json' },
    body: JSON.stringify({ model_id: 'tiny' }),
  });
  if (!loaded.ok) throw new Error(`load: ${loaded.status} ${await loaded.text()}`);
  return { url, port, agentPort, stop };
}

/** HAProxy in front of two nodes; resolves once it sends requests to both. */
async function startHaproxy([node1, node2]) {
  const lb = await freePort();
  const child = spawn('haproxy', ['-db', '-f', join(repo, 'deploy/haproxy/haproxy.cfg')], {
    stdio: ['ignore', 'ignore', 'ignore'],
    env: {
      ...process.env,
      LB_ADDR: `127.0.0.1:${lb}`,
      NODE1_ADDR: `127.0.0.1:${node1.port}`,
      NODE1_AGENT_PORT: String(node1.agentPort),
      NODE2_ADDR: `127.0.0.1:${node2.port}`,
      NODE2_AGENT_PORT: String(node2.agentPort),
    },
  });
  const stop = track(child);
  const url = `http://127.0.0.1:${lb}`;
  await waitFor(`${url}/health`);
  await new Promise((resolve) => setTimeout(resolve, 2500)); // two agent checks: the nodes' weights are in
  return { url, stop };
}

/** Milliseconds of each of `count` sequential requests, taking `urls` in turn, each on one kept-alive connection. */
async function latencies(urls, count, path, body) {
  const targets = urls.map((url) => {
    const { hostname, port } = new URL(url);
    return { hostname, port, agent: new http.Agent({ keepAlive: true, maxSockets: 1 }) };
  });
  const times = [];
  for (let i = 0; i < count; i++) {
    const { hostname, port, agent } = targets[i % targets.length];
    const start = performance.now();
    await new Promise((resolve, reject) => {
      const req = http.request(
        { hostname, port, path, agent, method: body ? 'POST' : 'GET', headers: { 'Content-Type': 'application/json' } },
        (res) => {
          if (res.statusCode !== 200) reject(new Error(`${path}: ${res.statusCode}`));
          res.resume().on('end', resolve);
        },
      );
      req.on('error', reject);
      req.end(body && JSON.stringify(body));
    });
    times.push(performance.now() - start);
  }
  for (const { agent } of targets) agent.destroy();
  return times.sort((a, b) => a - b);
}

const percentile = (sorted, p) => sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))];
const completion = { model: 'tiny', prompt: 'Hello', max_tokens: 1 };
const figures = { one: [], two: [], modelsDirect: [], modelsLb: [], completionDirect: [], completionLb: [] };

try {
  for (let round = 1; round <= ROUNDS; round++) {
    log(`round ${round}/${ROUNDS}: one node`);
    const alone = await startNode();
    figures.one.push(
      oaiLoad(alone.url, 'tiny', { tokens: 128, concurrency: [CONCURRENCY], temperature: 0.8 })[`aggregate_c${CONCURRENCY}_tok_s`],
    );
    await alone.stop();

    log(`round ${round}/${ROUNDS}: two nodes behind HAProxy`);
    const nodes = [await startNode(), await startNode()];
    const haproxy = await startHaproxy(nodes);
    figures.two.push(
      oaiLoad(haproxy.url, 'tiny', { tokens: 128, concurrency: [CONCURRENCY], temperature: 0.8 })[`aggregate_c${CONCURRENCY}_tok_s`],
    );
    const direct = nodes.map((node) => node.url);
    figures.modelsDirect.push(await latencies(direct, 2000, '/v1/models'));
    figures.modelsLb.push(await latencies([haproxy.url], 2000, '/v1/models'));
    figures.completionDirect.push(await latencies(direct, 200, '/v1/completions', completion));
    figures.completionLb.push(await latencies([haproxy.url], 200, '/v1/completions', completion));
    await haproxy.stop();
    await Promise.all(nodes.map((node) => node.stop()));
  }
} finally {
  for (const child of running) child.kill('SIGTERM');
  await Promise.all([...running].map((child) => once(child, 'exit')));
  await rm(root, { recursive: true, force: true });
}

const one = median(figures.one);
const two = median(figures.two);
const ms = (rounds, p) => median(rounds.map((sorted) => percentile(sorted, p))).toFixed(3);
console.log(`# ${os.cpus().length} CPUs (${os.cpus()[0]?.model}), ${ROUNDS} rounds, medians; llama_cpp cpu plugin, test model`);
console.log(
  `aggregate tok/s, ${CONCURRENCY} streams\tone node ${one.toFixed(1)}\ttwo nodes behind HAProxy ${two.toFixed(1)}\tratio ${(two / one).toFixed(3)}`,
);
for (const [what, direct, lb] of [
  ['GET /v1/models', figures.modelsDirect, figures.modelsLb],
  ['1-token completion', figures.completionDirect, figures.completionLb],
]) {
  console.log(
    `${what} ms\tdirect p50 ${ms(direct, 50)} p99 ${ms(direct, 99)}\tthrough HAProxy p50 ${ms(lb, 50)} p99 ${ms(lb, 99)}\tadded p50 ${(ms(lb, 50) - ms(direct, 50)).toFixed(3)}`,
  );
}
