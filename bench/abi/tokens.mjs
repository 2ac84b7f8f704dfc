// Host-side cost of @llm-node/abi-native: tokens per second delivered to JS from the echo test engine
// emitting as fast as it can (one stream, and 64 at once), the host's cost per token against the engine
// alone, and RSS across 10,000 generate calls.
//
//   pnpm --filter @llm-node/abi-native build && node --expose-gc bench/abi/tokens.mjs
import { execFile } from 'node:child_process';
import { mkdtemp, writeFile } from 'node:fs/promises';
import os from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { openEngine } from '@llm-node/abi-native';
import { buildTestPlugin } from '@llm-node/abi-native/testing';

const run = promisify(execFile);
const here = fileURLToPath(new URL('.', import.meta.url));
const SINGLE_TOKENS = 10_000_000;
const CONCURRENT = 64;
const CONCURRENT_TOKENS = 500_000; // per stream
const CALLS = 10_000;

const median = (values) => values.toSorted((a, b) => a - b)[Math.floor(values.length / 2)];

const plugin = await buildTestPlugin('echo');
const modelPath = join(await mkdtemp(join(os.tmpdir(), 'llm-node-bench-')), 'model.gguf');
await writeFile(modelPath, Buffer.alloc(1024));
const engine = openEngine(plugin);
await engine.init({ gpuBackend: 'cpu', pluginDir: os.tmpdir() });
await engine.loadModel('m', { path: modelPath, format: 'gguf', contextLength: 2 ** 31 - 1 });

/** Streams `tokens` counter tokens; returns tokens and chunks seen by JS. */
async function stream(tokens, prompt = 'go') {
  const generation = engine.generate({ modelId: 'm', prompt, ignoreEos: true, maxTokens: tokens });
  let count = 0;
  let chunks = 0;
  for await (const chunk of generation) {
    count += chunk.tokenCount;
    chunks++;
  }
  if (count !== tokens) throw new Error(`expected ${tokens} tokens, got ${count}`);
  return { count, chunks };
}

/** Wall seconds and CPU seconds (all threads) of `work`. */
async function timed(work) {
  const cpu = process.cpuUsage();
  const start = process.hrtime.bigint();
  const value = await work();
  const wall = Number(process.hrtime.bigint() - start) / 1e9;
  const used = process.cpuUsage(cpu);
  return { value, wall, cpu: (used.user + used.system) / 1e6 };
}

// First, while the heap is small: short generate calls, 16 at a time; RSS after 1,000 (warm), then after each of
// three rounds of 10,000. The first rounds grow it while V8 enlarges its young generation for the allocation
// rate (heapTotal 13 → 37 MiB; with --max-semi-space-size=1 RSS stays within 1 MiB); a leak would grow every round.
async function calls(n) {
  let next = 0;
  await Promise.all(
    Array.from({ length: 16 }, async () => {
      while (next++ < n) await stream(3, 'a b c');
    }),
  );
}
async function rss() {
  // Native buffers go with their Generation objects, whose finalizers run after a GC: collect twice.
  for (let i = 0; i < 2; i++) {
    globalThis.gc?.();
    await new Promise((resolve) => setImmediate(resolve));
  }
  return process.memoryUsage().rss / 2 ** 20;
}
await calls(1_000);
const rssAfterRounds = [await rss()];
const callRounds = [];
for (let round = 0; round < 3; round++) {
  callRounds.push(await timed(() => calls(CALLS)));
  rssAfterRounds.push(await rss());
}
// The engine alone: the same plugin driven from C with a callback that only counts.
const driver = join(os.tmpdir(), `llm-node-engine-only-${process.pid}`);
await run('cc', ['-O2', `-I${join(here, '../../packages/abi-native/include')}`, '-o', driver, join(here, 'engine_only.c'), '-ldl']);
const engineOnly = [];
for (let i = 0; i < 5; i++) engineOnly.push(JSON.parse((await run(driver, [plugin, modelPath, String(SINGLE_TOKENS)])).stdout));
const engineWallNs = median(engineOnly.map((r) => (r.wallSeconds / r.tokens) * 1e9));
const engineCpuNs = median(engineOnly.map((r) => (r.cpuSeconds / r.tokens) * 1e9));

// One stream.
await stream(1_000_000); // warm-up
const single = [];
for (let i = 0; i < 5; i++) single.push(await timed(() => stream(SINGLE_TOKENS)));
const singleRate = median(single.map((r) => SINGLE_TOKENS / r.wall));
const singleCpuNs = median(single.map((r) => (r.cpu / SINGLE_TOKENS) * 1e9));
const tokensPerChunk = median(single.map((r) => r.value.count / r.value.chunks));

// 64 streams at once.
const concurrent = [];
for (let i = 0; i < 3; i++) {
  concurrent.push(await timed(() => Promise.all(Array.from({ length: CONCURRENT }, () => stream(CONCURRENT_TOKENS)))));
}
const concurrentRate = median(concurrent.map((r) => (CONCURRENT * CONCURRENT_TOKENS) / r.wall));

await engine.close();

const f = (value, digits = 2) => value.toFixed(digits);
console.log(
  `machine: ${os.cpus()[0]?.model} × ${os.cpus().length}, ${os.platform()} ${os.arch()}, Node ${process.version}, load ${os
    .loadavg()
    .map((l) => f(l))
    .join(' ')}`,
);
console.log(
  `single stream:        ${f(singleRate / 1e6)} M tokens/s delivered to JS (median of 5 × ${SINGLE_TOKENS / 1e6} M), ${f(tokensPerChunk, 0)} tokens per chunk`,
);
console.log(
  `${CONCURRENT} streams at once:   ${f(concurrentRate / 1e6)} M tokens/s in all (median of 3 × ${CONCURRENT} × ${CONCURRENT_TOKENS / 1e3}k)`,
);
console.log(`engine alone (C):     ${f(engineWallNs, 1)} ns wall, ${f(engineCpuNs, 1)} ns CPU per token`);
console.log(`through the host:     ${f(1e9 / singleRate, 1)} ns wall, ${f(singleCpuNs, 1)} ns CPU per token (both threads)`);
console.log(`host overhead:        ${f((singleCpuNs - engineCpuNs) / 1000, 3)} µs CPU per token`);
const callMicros = median(callRounds.map((r) => (r.wall / CALLS) * 1e6));
console.log(`generate calls:       ${f(callMicros, 0)} µs each (3-token generations, 16 at a time)`);
console.log(
  `RSS:                  ${rssAfterRounds.map((m) => f(m, 1)).join(' → ')} MiB (after 1,000 calls, then after each ${CALLS})${globalThis.gc ? '' : ' — run with --expose-gc for steadier figures'}`,
);
