import { once } from 'node:events';
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { Worker } from 'node:worker_threads';
import { buildTestPlugin, installTestPlugin } from '@llm-node/abi-native/testing';
import { writeGgufModel } from '@llm-node/registry/testing';
import { cpuSeconds, processTree, startNode } from '../lib/node.mjs';

const STREAMS = Number(process.argv[2] ?? 64);
const TOKENS = Number(process.argv[3] ?? 20000);
const DELAY_MS = 5;
const DELAYED_TOKENS = 400;
const SINGLE_REQUESTS = 400;
// About 530 tokens, as in the load client's time-to-first-token request.
const LONG_PROMPT = 'The quick brown fox jumps over the lazy dog. '.repeat(51);

const percentile = (sorted, p) => sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))];
const sortedOf = (values) => Float64Array.from(values).sort();
const ms = (value) => `${value.toFixed(3)} ms`;

// ---- The node: two echo builds, one model each, served from another process ----------------------------
const root = await mkdtemp(join(os.tmpdir(), 'llm-node-bench-server-'));
const enginesDir = join(root, 'engines');
const modelsDir = join(root, 'models');
await installTestPlugin({ enginesDir, plugin: await buildTestPlugin('echo'), manifest: { architectures: ['echo'] } });
await installTestPlugin({
  enginesDir,
  plugin: await buildTestPlugin('echo', { defines: { ENGINE_ID: 'echo_delay', ECHO_TOKEN_DELAY_US: DELAY_MS * 1000 } }),
  manifest: { architectures: ['echo_delay'] },
});
await writeGgufModel(join(modelsDir, 'echo.gguf'), { architecture: 'echo' });
await writeGgufModel(join(modelsDir, 'echo-delay.gguf'), { architecture: 'echo_delay' });

const node = await startNode(enginesDir, modelsDir);
const { port } = node;

/** `STREAMS` chats at once; returns their token times and the wall time from the first request to the last token. */
async function concurrentChats(model, maxTokens) {
  const start = performance.now();
  const streams = await Promise.all(Array.from({ length: STREAMS }, (_, i) => node.streamChat(model, `Story number ${i}.`, maxTokens)));
  const end = Math.max(...streams.map((times) => times.at(-1)));
  return { streams, seconds: (end - start) / 1000 };
}

/**
 * Polls /health one request at a time, 5 ms apart, from a worker thread (its own event loop: the client
 * parsing thousands of events per second must not delay it). Resolves once the worker's first request has
 * been answered; `stop()` gives every latency since, in ms.
 */
async function startHealthPoller() {
  const worker = new Worker(
    `const { parentPort, workerData } = require('node:worker_threads');
     const http = require('node:http');
     const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
     const get = () => new Promise((resolve, reject) =>
       http.get({ host: '127.0.0.1', port: workerData.port, path: '/health', agent }, (res) => res.resume().on('end', resolve)).on('error', reject));
     let running = true;
     parentPort.once('message', () => (running = false));
     (async () => {
       await get();
       parentPort.postMessage('ready');
       const latencies = [];
       while (running) {
         const start = performance.now();
         await get();
         latencies.push(performance.now() - start);
         await new Promise((resolve) => setTimeout(resolve, 5));
       }
       agent.destroy();
       parentPort.postMessage(latencies);
     })();`,
    { eval: true, workerData: { port } },
  );
  await once(worker, 'message');
  return {
    async stop() {
      worker.postMessage('stop');
      const [latencies] = await once(worker, 'message');
      await worker.terminate();
      return sortedOf(latencies);
    },
  };
}

try {
  for (const model_id of ['echo', 'echo-delay']) {
    await node.request('POST', '/api/models/load', { model_id, context_length: 1_000_000 });
    await node.streamChat(model_id, 'warm up', 16);
  }
  const idlePoller = await startHealthPoller();
  await new Promise((resolve) => setTimeout(resolve, 1000));
  const idleHealth = await idlePoller.stop();

  /** Runs `work` with /health polled throughout; returns its value and the latencies. */
  const withHealthPolled = async (work) => {
    const poller = await startHealthPoller();
    const value = await work();
    return { value, health: await poller.stop() };
  };

  // The node's own CPU and its engine hosts' (the echo engine's share of that is small: bench/abi measures it).
  const pids = processTree(node.pid);
  const cpuBefore = cpuSeconds(pids);
  const flood = await withHealthPolled(() => concurrentChats('echo', TOKENS));
  const floodCpu = cpuSeconds(pids) - cpuBefore;
  const { streams, seconds } = flood.value;
  const tokens = streams.reduce((sum, times) => sum + times.length, 0);
  if (tokens !== STREAMS * TOKENS) throw new Error(`expected ${STREAMS * TOKENS} tokens, got ${tokens}`);

  const paced = await withHealthPolled(() => concurrentChats('echo-delay', DELAYED_TOKENS));
  const added = sortedOf(paced.value.streams.flatMap((times) => times.slice(1).map((t, i) => t - times[i] - DELAY_MS)));
  const pacedRate = (STREAMS * DELAYED_TOKENS) / paced.value.seconds;

  // One chat at a time after a short idle, one token each: what the node adds to a request's time to its first
  // token (parsing, validation, the chat template's worker, the engine host's round trip, the first SSE event).
  const firstTokenMs = [];
  for (let i = 0; i < SINGLE_REQUESTS; i++) {
    await new Promise((resolve) => setTimeout(resolve, DELAY_MS));
    const start = performance.now();
    const [first] = await node.streamChat('echo', LONG_PROMPT, 1);
    firstTokenMs.push(first - start);
  }
  const single = sortedOf(firstTokenMs);

  const healthLine = (health) =>
    `/health p50 ${ms(percentile(health, 50))}, p99 ${ms(percentile(health, 99))}, max ${ms(health.at(-1))} (${health.length} requests)`;
  console.log(
    `llm-node server bench — ${new Date().toISOString().slice(0, 10)}, ${os.cpus()[0]?.model} × ${os.cpus().length}, node ${process.version}, load average ${os.loadavg()[0].toFixed(1)}`,
  );
  console.log(
    `${STREAMS} concurrent streamed chats on the echo engine (ignore_eos); the client counts one token per SSE event with content`,
  );
  console.log(`idle    ${healthLine(idleHealth)}`);
  console.log(
    `flood   engine as fast as it can, ${TOKENS} tokens each: ${Math.round(tokens / seconds).toLocaleString('en')} tokens/s aggregate (${tokens} in ${seconds.toFixed(2)} s)`,
  );
  console.log(
    `        CPU of the node and its engine host: ${((floodCpu / tokens) * 1e6).toFixed(2)} µs per token (${floodCpu.toFixed(2)} s)`,
  );
  console.log(`        ${healthLine(flood.health)}`);
  console.log(
    `paced   engine sleeps ${DELAY_MS} ms per token, ${DELAYED_TOKENS} tokens each: ${Math.round(pacedRate).toLocaleString('en')} tokens/s aggregate`,
  );
  console.log(
    `        added inter-token latency p50 ${ms(percentile(added, 50))}, p99 ${ms(percentile(added, 99))} (${added.length} gaps)`,
  );
  console.log(`        ${healthLine(paced.health)}`);
  console.log(
    `single  ${SINGLE_REQUESTS} chats one at a time, ${DELAY_MS} ms apart, a ~530-token prompt, 1 token each: time to first token p50 ${ms(percentile(single, 50))}, p90 ${ms(percentile(single, 90))}`,
  );
} finally {
  await node.stop();
  await rm(root, { recursive: true, force: true });
}
