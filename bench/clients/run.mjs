// Careless and hostile clients together, for minutes, against one node (bench/server/serve.mjs, its engines in
// host processes): 64 clients each looping over streams they finish, streams they abort at a random moment,
// streams they stop reading, whole completions, loads and unloads racing the generations, chats whose model's
// template never ends, and oversized prompts; /health polled throughout from a thread of its own.
//
//   pnpm build && node bench/clients/run.mjs [seconds=180] [clients=64]
//
// It prints the requests that failed for no reason of their own (a 5xx, a 404 for a model on disk, a broken
// connection on a request the client did not break; target 0), /health latency (target p99 < 50 ms), and the
// node's resident memory after a first 30 s round and after the run (target: within 10%).
import { once } from 'node:events';
import http from 'node:http';
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { Worker } from 'node:worker_threads';
import { buildTestPlugin, installTestPlugin } from '@llm-node/abi-native/testing';
import { writeGgufModel } from '@llm-node/registry/testing';
import { rssMiB, startNode } from '../lib/node.mjs';

const SECONDS = Number(process.argv[2] ?? 180);
const CLIENTS = Number(process.argv[3] ?? 64);
const WARM_UP_SECONDS = 30;

const root = await mkdtemp(join(os.tmpdir(), 'llm-node-bench-clients-'));
const enginesDir = join(root, 'engines');
const modelsDir = join(root, 'models');
await installTestPlugin({ enginesDir, plugin: await buildTestPlugin('echo'), manifest: { architectures: ['echo'] } });
await installTestPlugin({
  enginesDir,
  plugin: await buildTestPlugin('echo', { defines: { ENGINE_ID: 'echo_slow', ECHO_TOKEN_DELAY_US: 5000 } }),
  manifest: { architectures: ['echo_slow'] },
});
const chat = '{% for m in messages %}{{ m.role }}: {{ m.content }}\n{% endfor %}assistant:';
await writeGgufModel(join(modelsDir, 'fast.gguf'), { architecture: 'echo', chatTemplate: chat });
await writeGgufModel(join(modelsDir, 'slow.gguf'), { architecture: 'echo_slow', chatTemplate: chat });
await writeGgufModel(join(modelsDir, 'racy.gguf'), { architecture: 'echo', chatTemplate: chat });
await writeGgufModel(join(modelsDir, 'endless.gguf'), {
  architecture: 'echo',
  chatTemplate: '{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}',
});

const node = await startNode(enginesDir, modelsDir);
const { port } = node;
const agent = new http.Agent({ keepAlive: true, maxSockets: Infinity });

/** One request; `behave` decides what the client does with the answer. Resolves with what happened. */
function exchange(path, body, behave = 'read') {
  return new Promise((resolve) => {
    const req = http.request(
      { host: '127.0.0.1', port, method: 'POST', path, agent, headers: { 'Content-Type': 'application/json' } },
      (res) => {
        if (behave === 'stall') {
          // Reads the first bytes, then nothing for 40 s: by then the node must have ended the stream (a paused
          // socket cannot see that until it reads again).
          let text = '';
          res.setEncoding('utf8');
          res.on('data', (part) => (text += part));
          res.once('data', () => {
            res.pause();
            setTimeout(() => res.resume(), 40_000);
          });
          res.on('close', () => resolve({ status: res.statusCode, text, cutShort: !text.endsWith('data: [DONE]\n\n') }));
          return;
        }
        if (behave === 'abort') {
          setTimeout(() => {
            req.destroy();
            resolve({ status: res.statusCode, ended: 'by the client' });
          }, Math.random() * 200);
        }
        let text = '';
        res.setEncoding('utf8');
        res.on('data', (part) => (text += part));
        res.on('end', () => resolve({ status: res.statusCode, text }));
        res.on('error', () => resolve({ status: res.statusCode, broken: behave !== 'abort' }));
      },
    );
    req.on('error', () => resolve({ status: 0, broken: behave !== 'abort' }));
    req.end(JSON.stringify(body));
  });
}

const counts = {};
const failures = [];
const count = (kind) => (counts[kind] = (counts[kind] ?? 0) + 1);
const fail = (kind, outcome) => failures.push(`${kind}: ${outcome.status} ${(outcome.text ?? '').slice(0, 160)}`);

const messages = (content) => [{ role: 'user', content }];
const scenarios = [
  [
    'stream read to the end',
    async () => {
      const outcome = await exchange('/v1/chat/completions', {
        model: pick(['fast', 'slow', 'racy']),
        messages: messages('hello there'),
        stream: true,
        max_tokens: 64,
        ignore_eos: true,
      });
      if (outcome.status !== 200 || !outcome.text.endsWith('data: [DONE]\n\n')) fail('stream', outcome);
    },
  ],
  [
    'stream aborted at a random moment',
    () =>
      exchange(
        '/v1/chat/completions',
        { model: pick(['fast', 'slow']), messages: messages('go'), stream: true, max_tokens: 100_000, ignore_eos: true },
        'abort',
      ),
  ],
  [
    'stream not read for 40 s',
    async () => {
      const outcome = await exchange(
        '/v1/completions',
        { model: 'fast', prompt: 'flood', stream: true, max_tokens: 100_000_000, ignore_eos: true },
        'stall',
      );
      if (!outcome.cutShort) fail('stalled stream not ended by the node', outcome);
    },
  ],
  [
    'whole completion',
    async () => {
      const outcome = await exchange('/v1/completions', { model: pick(['fast', 'racy']), prompt: 'one two three', max_tokens: 16 });
      if (outcome.status !== 200) fail('completion', outcome);
    },
  ],
  [
    'load racing the generations',
    async () => {
      const outcome = await exchange('/api/models/load', { model_id: 'racy' });
      if (outcome.status !== 200) fail('load', outcome);
    },
  ],
  [
    'unload racing the generations',
    async () => {
      const outcome = await exchange('/api/models/unload', { model_id: 'racy' });
      if (![200, 404, 409].includes(outcome.status)) fail('unload', outcome);
    },
  ],
  [
    'chat whose template never ends',
    async () => {
      const outcome = await exchange('/v1/chat/completions', { model: 'endless', messages: messages('hi') });
      if (outcome.status !== 422) fail('runaway template', outcome);
    },
  ],
  [
    'oversized prompt',
    async () => {
      const outcome = await exchange('/v1/completions', { model: 'slow', prompt: 'word '.repeat(400_000), max_tokens: 1 });
      if (outcome.status !== 400) fail('oversized prompt', outcome);
    },
  ],
];
const weights = [30, 20, 3, 20, 8, 8, 3, 2];
function pick(items, itemWeights) {
  const weights = itemWeights ?? items.map(() => 1);
  let r = Math.random() * weights.reduce((a, b) => a + b, 0);
  for (let i = 0; i < items.length; i++) {
    r -= weights[i];
    if (r < 0) return items[i];
  }
  return items.at(-1);
}

function startHealthPoller() {
  const worker = new Worker(
    `const { parentPort, workerData } = require('node:worker_threads');
     const http = require('node:http');
     const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
     const get = () => new Promise((resolve) => {
       const req = http.get({ host: '127.0.0.1', port: workerData.port, path: '/health', agent, timeout: 5000 }, (res) => res.resume().on('end', () => resolve(res.statusCode)));
       req.on('timeout', () => req.destroy());
       req.on('error', () => resolve(0));
     });
     let running = true;
     parentPort.once('message', () => (running = false));
     (async () => {
       const latencies = [];
       let failed = 0;
       while (running) {
         const start = performance.now();
         if ((await get()) !== 200) failed++;
         latencies.push(performance.now() - start);
         await new Promise((resolve) => setTimeout(resolve, 50));
       }
       agent.destroy();
       parentPort.postMessage({ latencies, failed });
     })();`,
    { eval: true, workerData: { port } },
  );
  return {
    async stop() {
      worker.postMessage('stop');
      const [result] = await once(worker, 'message');
      await worker.terminate();
      return result;
    },
  };
}

/** Every client loops over the scenarios until `seconds` have passed. */
async function load(seconds) {
  const deadline = performance.now() + seconds * 1000;
  await Promise.all(
    Array.from({ length: CLIENTS }, async () => {
      while (performance.now() < deadline) {
        const [name, run] = pick(scenarios, weights);
        count(name);
        // A request the node never answers is a failure of its own; the client moves on.
        let timer;
        const hung = new Promise((resolve) => (timer = setTimeout(() => resolve('hung'), 90_000)));
        if ((await Promise.race([run(), hung])) === 'hung') failures.push(`${name}: no answer within 90 s`);
        clearTimeout(timer);
      }
    }),
  );
  // The node settles: the streams it ended, the engines' cancelled generations.
  await new Promise((resolve) => setTimeout(resolve, 10_000));
}

try {
  await exchange('/api/models/load', { model_id: 'fast', context_length: 1_000_000 });
  await exchange('/api/models/load', { model_id: 'slow', context_length: 4096 });
  const rssFresh = rssMiB(node.pid);
  // A first round brings the node's heap and buffers to their working size: memory is compared after it.
  await load(WARM_UP_SECONDS);
  for (const key of Object.keys(counts)) delete counts[key];
  failures.length = 0;
  const rssBefore = rssMiB(node.pid);

  const poller = startHealthPoller();
  await load(SECONDS);
  const health = await poller.stop();
  const rssAfter = rssMiB(node.pid);
  const metrics = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
  const lag = (name) => Number(new RegExp(`^llm_node_nodejs_eventloop_lag_${name}_seconds (\\S+)`, 'm').exec(metrics)?.[1] ?? NaN) * 1000;

  const sorted = Float64Array.from(health.latencies).sort();
  const at = (p) => sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))].toFixed(1);
  console.log(
    `llm-node careless-clients bench — ${new Date().toISOString().slice(0, 10)}, ${os.cpus()[0]?.model} × ${os.cpus().length}, node ${process.version}`,
  );
  console.log(`${CLIENTS} clients for ${SECONDS} s: ${Object.values(counts).reduce((a, b) => a + b, 0)} requests`);
  for (const [name] of scenarios) console.log(`  ${String(counts[name] ?? 0).padStart(7)}  ${name}`);
  console.log(
    `failed for no reason of their own: ${failures.length}${failures.length ? `\n    ${[...new Set(failures)].slice(0, 10).join('\n    ')}` : ''}`,
  );
  console.log(
    `/health: ${sorted.length} polls, p50 ${at(50)} ms, p99 ${at(99)} ms, max ${sorted.at(-1).toFixed(1)} ms, not 200: ${health.failed}`,
  );
  console.log(
    `node event loop delay over its life: p50 ${lag('p50').toFixed(1)} ms, p99 ${lag('p99').toFixed(1)} ms, max ${lag('max').toFixed(1)} ms`,
  );
  console.log(
    `node RSS: ${rssFresh.toFixed(0)} MiB fresh, ${rssBefore.toFixed(0)} MiB after a ${WARM_UP_SECONDS} s first round, ${rssAfter.toFixed(0)} MiB after the ${SECONDS} s run (${(((rssAfter - rssBefore) / rssBefore) * 100).toFixed(1)}%)`,
  );
} finally {
  agent.destroy();
  await node.stop();
  await rm(root, { recursive: true, force: true });
}
