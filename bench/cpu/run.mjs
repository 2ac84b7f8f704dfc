// The CPU comparison on this machine, in one run: llama-bench, llama.cpp's llama-server and llm-node
// (--gpu-backend cpu, the cpu llama_cpp plugin), same model, same threads, context and slots, same client.
//   pnpm bench:cpu [--rounds 3] [--tokens 256]
// Prints the figures and the ratios, and appends them to docs/performance.md.
import { execFileSync } from 'node:child_process';
import { appendFileSync, existsSync, mkdirSync, readFileSync, rmSync, symlinkSync } from 'node:fs';
import { cpus } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { makeModel } from '@llm-node/engine-llama-cpp';
import {
  answersCompletion,
  buildLlamaTools,
  cacheDir,
  checkLoadClient,
  llamaBench,
  log,
  median,
  oaiLoad,
  repo,
  startServer,
} from '../lib/llama-cpp.mjs';

const { values } = parseArgs({ options: { rounds: { type: 'string', default: '3' }, tokens: { type: 'string', default: '256' } } });
const rounds = Number(values.rounds);
const tokens = Number(values.tokens);

// Both servers get the same: threads (the physical cores, which is also the plugin's own default), 4 slots,
// and 2,048 tokens of context per slot (llama-server's -c is the total it splits across its -np slots).
const threads = physicalCores();
const slots = 4;
const contextPerSlot = 2048;
const concurrency = [slots];

checkLoadClient();
const cli = fileURLToPath(import.meta.resolve('@llm-node/cli/bin'));
if (!existsSync(cli) || !existsSync(join(repo, 'engines/llama_cpp/cpu/manifest.json'))) {
  throw new Error('build first: pnpm build (pnpm bench:cpu does)');
}
const bin = buildLlamaTools('llama-cpu', ['-DGGML_NATIVE=ON']);

// The benchmark's model: dim 64, 2 layers, the Llama 3 vocabulary (128,256 tokens), F16. So small that what
// a server does per token outside the forward pass shows. It writes whole UTF-8 tokens only (textOnly), as a
// trained model does: llama-server's chat parser ends a stream of random text that is not valid UTF-8 with an
// error after a few dozen tokens, which the client counted as a slow stream. Made each run (under a second), so
// the benchmark always measures what the maker makes now.
const modelsDir = join(cacheDir, 'models');

// llm-node gets the llama_cpp engine alone, as llama-server has only llama.cpp: the repository's engines/ also
// holds the onnx engine, whose host and ONNX Runtime the node would start too.
const enginesDir = join(cacheDir, 'engines');
rmSync(enginesDir, { recursive: true, force: true });
mkdirSync(enginesDir, { recursive: true });
symlinkSync(join(repo, 'engines', 'llama_cpp'), join(enginesDir, 'llama_cpp'), 'dir');
const model = join(modelsDir, 'bench-cpu.gguf');
await makeModel(model, { name: 'bench-cpu' }, { textOnly: true });

const results = { llamaBench: [], server: [], node: [] };
for (let round = 1; round <= rounds; round++) {
  log(`round ${round}/${rounds}: llama-bench`);
  results.llamaBench.push(llamaBench(bin('llama-bench'), model, ['-t', String(threads), '-p', '512', '-n', '128', '-r', '3']));

  log(`round ${round}/${rounds}: llama-server`);
  const server = await startServer(
    bin('llama-server'),
    [
      '-m',
      model,
      '-t',
      String(threads),
      '-c',
      String(contextPerSlot * slots),
      '-np',
      String(slots),
      '--host',
      '127.0.0.1',
      '--port',
      '18081',
    ],
    () => answersCompletion('http://127.0.0.1:18081', 'bench-cpu'),
  );
  results.server.push({ loadMs: server.ms, ...measure('http://127.0.0.1:18081', 'bench-cpu') });
  await server.stop();

  log(`round ${round}/${rounds}: llm-node`);
  const node = await startServer(
    process.execPath,
    [
      cli,
      '--gpu-backend',
      'cpu',
      '--engines-dir',
      enginesDir,
      '--models-dir',
      modelsDir,
      '--port',
      '18082',
      '--context-length',
      String(contextPerSlot),
      '--parallel',
      String(slots),
      '--log-level',
      'warn',
      '--load',
      'bench-cpu',
    ],
    () => answersCompletion('http://127.0.0.1:18082', 'bench-cpu'),
  );
  results.node.push({ loadMs: node.ms, ...measure('http://127.0.0.1:18082', 'bench-cpu') });
  await node.stop();
}

// Three runs of the client per server: sampled (single stream, TTFT, aggregate), greedy (single stream), sampled
// again for its aggregate. The first run's aggregate also measures how fast a server warms up: llm-node's first
// 4-stream pass after a start was 8-31% slower than its third while its chat template pool started a worker in
// that burst, and is now as fast (docs/performance.md, "Warm-up"). The third run's is the throughput a running
// server gives. Both are reported.
function measure(base, modelId) {
  const sampled = oaiLoad(base, modelId, { tokens, concurrency, temperature: 0.8 });
  const greedy = oaiLoad(base, modelId, { tokens, concurrency: [0], temperature: 0 });
  const warmed = oaiLoad(base, modelId, { tokens, concurrency, temperature: 0.8 });
  return {
    single: sampled.single_decode_tok_s,
    singleGreedy: greedy.single_decode_tok_s,
    ttft: sampled.ttft_512_ms,
    aggregateFirst: sampled[`aggregate_c${slots}_tok_s`],
    aggregate: warmed[`aggregate_c${slots}_tok_s`],
  };
}

// The machine is shared: figures drift between rounds for both servers alike. Each round measures both
// back to back, so the ratio within a round is the robust figure: report its median and its range.
const m = (list, key) => median(list.map((r) => r[key]));
const ratios = (key, over = (i) => results.server[i][key]) => results.node.map((r, i) => r[key] / over(i));
const rows = [
  ['single-stream decode, temperature 0.8 (tok/s)', 'single'],
  ['single-stream decode, greedy (tok/s)', 'singleGreedy'],
  ['time to first token, ~530-token prompt (ms)', 'ttft'],
  [`aggregate, ${slots} streams: the client's first run after the start (tok/s)`, 'aggregateFirst'],
  [`aggregate, ${slots} streams: its third run, the server warm (tok/s)`, 'aggregate'],
  ['start to a first answer, model named at start (ms)', 'loadMs'],
];
const f = (x) => (x >= 100 ? x.toFixed(0) : x.toFixed(2));
const spread = (values) => `${median(values).toFixed(2)} (${Math.min(...values).toFixed(2)}–${Math.max(...values).toFixed(2)})`;
const tg = (i) => results.llamaBench[i].tg128;
const table = [
  '| measure | llama-server | llm-node | llm-node / llama-server, per round: median (range) |',
  '|---|---:|---:|---:|',
  ...rows.map(([name, key]) => `| ${name} | ${f(m(results.server, key))} | ${f(m(results.node, key))} | ${spread(ratios(key))} |`),
  '',
  '| llama-bench | tok/s | llm-node / llama-bench tg128, per round |',
  '|---|---:|---:|',
  `| pp512 | ${f(m(results.llamaBench, 'pp512'))} | |`,
  `| tg128 | ${f(m(results.llamaBench, 'tg128'))} | single stream at 0.8: ${spread(ratios('single', tg))}; greedy: ${spread(ratios('singleGreedy', tg))} |`,
].join('\n');
const ttftGap = median(results.node.map((r, i) => r.ttft - results.server[i].ttft));
// The commit measured; "+changes" when files other than this report differ from it.
const git = (...args) => execFileSync('git', ['-C', repo, ...args], { encoding: 'utf8' }).trim();
const commit = git('rev-parse', '--short', 'HEAD') + (git('status', '--porcelain', '--', '.', ':!docs/performance.md') ? '+changes' : '');
const machine = `${cpus()[0]?.model.trim()}, ${cpus().length} logical CPUs`;
const section = `
### CPU run, ${new Date().toISOString().slice(0, 16).replace('T', ' ')} UTC — ${commit}

Machine: ${machine}. Both servers: ${threads} threads, ${slots} slots, ${contextPerSlot} tokens of context per slot
(llama-server \`-t ${threads} -c ${contextPerSlot * slots} -np ${slots}\`; llm-node \`--context-length ${contextPerSlot} --parallel ${slots}\`,
its plugin using the physical cores). Client: oai_load.py, ${tokens} tokens, ignore_eos, three runs per server (sampled, greedy, sampled again for a warm aggregate). Medians of ${rounds} interleaved rounds.
TTFT, llm-node − llama-server, median per round: ${ttftGap.toFixed(2)} ms. Start to a first answer: each server is started
with the model named (llama-server \`-m\`, llm-node \`--load\`) and timed from its process's start to the first one-token
completion it answers.

${table}
`;
console.log(section);
appendFileSync(join(repo, 'docs/performance.md'), section);
log('appended to docs/performance.md');

function physicalCores() {
  // The plugin counts distinct thread_siblings sets; do the same so both sides run as many threads.
  try {
    const sets = new Set();
    for (let i = 0; i < cpus().length; i++) {
      sets.add(readFileSync(`/sys/devices/system/cpu/cpu${i}/topology/thread_siblings`, 'utf8'));
    }
    return sets.size;
  } catch {
    return cpus().length;
  }
}
