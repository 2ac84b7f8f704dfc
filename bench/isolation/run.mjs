// What running each engine in a host process of its own costs, against the same engine in the node's process,
// on this machine, in the same run with rounds interleaved (Linux: it reads /proc).
//
//   pnpm build && node bench/isolation/run.mjs [rounds=3]
//
// 1. 64 streamed chats of the echo test engine as fast as it can (20,000 tokens each) over HTTP: aggregate
//    tokens/s, and the CPU the node and its engine hosts spend per token together.
// 2. One stream of the llama_cpp cpu plugin on the made test model: decode tokens/s by the shared load client
//    (../shared/bench/oai_load.py, temperature 0.8, 256 tokens).
// 3. From a crash of the llama_cpp engine host (SIGSEGV) to the next answered request: the restart's backoff,
//    the host's start, engine_init and the model's load.
// 4. Resident memory of one engine host: echo with a model loaded, llama_cpp with the test model loaded.
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { buildTestPlugin, installTestPlugin } from '@llm-node/abi-native/testing';
import { makeModel } from '@llm-node/engine-llama-cpp';
import { writeGgufModel } from '@llm-node/registry/testing';
import { checkLoadClient, median, oaiLoad, repo } from '../lib/llama-cpp.mjs';
import { cpuSeconds, processTree, rssMiB, startNode } from '../lib/node.mjs';

const ROUNDS = Number(process.argv[2] ?? 3);
const STREAMS = 64;
const TOKENS = 20_000;
const MODES = [
  ['in-process', { inProcess: true }],
  ['engine host', { inProcess: false }],
];
checkLoadClient();

const root = await mkdtemp(join(os.tmpdir(), 'llm-node-bench-isolation-'));
const echoEngines = join(root, 'engines');
const echoModels = join(root, 'models');
await installTestPlugin({ enginesDir: echoEngines, plugin: await buildTestPlugin('echo'), manifest: { architectures: ['echo'] } });
await writeGgufModel(join(echoModels, 'echo.gguf'), { architecture: 'echo' });
const llamaModels = join(root, 'llama-models');
await makeModel(join(llamaModels, 'tiny.gguf'));
const llamaEngines = join(repo, 'engines');

const hosts = (node) => processTree(node.pid).slice(1);

async function echoFlood(options) {
  const node = await startNode(echoEngines, echoModels, options);
  try {
    await node.request('POST', '/api/models/load', { model_id: 'echo', context_length: 1_000_000 });
    await node.streamChat('echo', 'warm up', 16);
    const pids = processTree(node.pid);
    const cpuBefore = cpuSeconds(pids);
    const start = performance.now();
    const streams = await Promise.all(Array.from({ length: STREAMS }, (_, i) => node.streamChat('echo', `Story ${i}.`, TOKENS)));
    const seconds = (performance.now() - start) / 1000;
    const tokens = streams.reduce((sum, times) => sum + times.length, 0);
    if (tokens !== STREAMS * TOKENS) throw new Error(`expected ${STREAMS * TOKENS} tokens, got ${tokens}`);
    const rss = options.inProcess ? null : rssMiB(hosts(node)[0]);
    return { tokensPerSecond: tokens / seconds, cpuMicrosPerToken: ((cpuSeconds(pids) - cpuBefore) / tokens) * 1e6, rss };
  } finally {
    await node.stop();
  }
}

async function llamaSingle(options) {
  const node = await startNode(llamaEngines, llamaModels, options);
  try {
    await node.request('POST', '/api/models/load', { model_id: 'tiny', context_length: 2048, parallel: 1 });
    const figures = oaiLoad(`http://127.0.0.1:${node.port}`, 'tiny', { tokens: 256, concurrency: [0], temperature: 0.8 });
    return { tokensPerSecond: figures.single_decode_tok_s, rss: options.inProcess ? null : rssMiB(hosts(node)[0]) };
  } finally {
    await node.stop();
  }
}

/** Crashes the llama_cpp host `times` times; each figure is the time from the signal to the next answer. */
async function crashToServing(times) {
  const node = await startNode(llamaEngines, llamaModels);
  const figures = [];
  try {
    await node.request('POST', '/api/models/load', { model_id: 'tiny', context_length: 2048, parallel: 1 });
    for (let i = 0; i < times; i++) {
      const [host] = hosts(node);
      const start = performance.now();
      process.kill(host, 'SIGSEGV');
      for (;;) {
        try {
          await node.request('POST', '/v1/completions', { model: 'tiny', prompt: 'Hello', max_tokens: 1 });
          break;
        } catch {
          await new Promise((resolve) => setTimeout(resolve, 10)); // the request in flight when it died
        }
      }
      figures.push(performance.now() - start);
    }
  } finally {
    await node.stop();
  }
  return figures;
}

const results = Object.fromEntries(MODES.map(([name]) => [name, { echo: [], llama: [] }]));
try {
  for (let round = 0; round < ROUNDS; round++) {
    for (const [name, options] of round % 2 === 0 ? MODES : [...MODES].reverse()) {
      results[name].echo.push(await echoFlood(options));
      results[name].llama.push(await llamaSingle(options));
    }
  }
  const crashes = await crashToServing(3);

  const inProcess = results['in-process'];
  const isolated = results['engine host'];
  const ratios = (key, field) => isolated[key].map((r, i) => r[field] / inProcess[key][i][field]);
  const spread = (values) => `${median(values).toFixed(3)} (${Math.min(...values).toFixed(3)}–${Math.max(...values).toFixed(3)})`;
  const m = (runs, field) => median(runs.map((r) => r[field]));
  console.log(
    `llm-node isolation bench — ${new Date().toISOString().slice(0, 10)}, ${os.cpus()[0]?.model} × ${os.cpus().length}, node ${process.version}, ${ROUNDS} rounds`,
  );
  console.log(`| figure | in-process | engine host | engine host / in-process, median per round (range) |`);
  console.log(`|---|---|---|---|`);
  console.log(
    `| echo, ${STREAMS} streams over HTTP (tokens/s) | ${Math.round(m(inProcess.echo, 'tokensPerSecond')).toLocaleString('en')} | ${Math.round(m(isolated.echo, 'tokensPerSecond')).toLocaleString('en')} | ${spread(ratios('echo', 'tokensPerSecond'))} |`,
  );
  console.log(
    `| echo, CPU per token, node and hosts together (µs) | ${m(inProcess.echo, 'cpuMicrosPerToken').toFixed(2)} | ${m(isolated.echo, 'cpuMicrosPerToken').toFixed(2)} | +${(m(isolated.echo, 'cpuMicrosPerToken') - m(inProcess.echo, 'cpuMicrosPerToken')).toFixed(2)} µs |`,
  );
  console.log(
    `| llama_cpp cpu, one stream (tokens/s) | ${m(inProcess.llama, 'tokensPerSecond').toFixed(1)} | ${m(isolated.llama, 'tokensPerSecond').toFixed(1)} | ${spread(ratios('llama', 'tokensPerSecond'))} |`,
  );
  console.log(
    `crash to serving again (llama_cpp, test model reloaded), after the 1st, 2nd, 3rd crash (restart backoff 0.1, 0.2, 0.4 s): ${crashes.map((ms) => `${Math.round(ms)} ms`).join(', ')}`,
  );
  console.log(
    `engine host RSS: echo with a model ${m(isolated.echo, 'rss').toFixed(0)} MiB; llama_cpp with the test model ${m(isolated.llama, 'rss').toFixed(0)} MiB`,
  );
} finally {
  await rm(root, { recursive: true, force: true });
}
