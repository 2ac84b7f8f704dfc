// The onnx engine's cpu plugin against ONNX Runtime driven directly, on the same graph: the plugin through the
// node's binding (its own decode loop over ONNX Runtime's C API) and onnxruntime-node's JavaScript session (the
// engine's reference decoder), each decoding greedily from the same prompt with the same threads.
//   node bench/onnx/run.mjs [--rounds 3] [--tokens 256] [--dim 64] [--layers 2] [--threads <cpus>]   (after the build)
// Prints tokens/s of each, the median of the rounds, and the plugin's ratio to ONNX Runtime.
import { existsSync, readFileSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';

import { openEngine } from '@llm-node/abi-native';
import { makeOnnxModel } from '@llm-node/engine-onnx';
import { builtPluginDir, llama3ChatPieces, openReference, readTokenText } from '@llm-node/engine-onnx/testing';

import { cacheDir, log, median } from '../lib/llama-cpp.mjs';

const { values } = parseArgs({
  options: {
    rounds: { type: 'string', default: '3' },
    tokens: { type: 'string', default: '256' },
    dim: { type: 'string', default: '64' },
    layers: { type: 'string', default: '2' },
    threads: { type: 'string', default: String(availableParallelism()) },
  },
});
const rounds = Number(values.rounds);
const tokens = Number(values.tokens);
const shape = { dim: Number(values.dim), layers: Number(values.layers), ffn: 4 * Number(values.dim) };
// Both sessions get the same intra-op threads.
const threads = Number(values.threads);

const pluginDir = builtPluginDir();
if (pluginDir === undefined) throw new Error('build first: pnpm turbo run build --filter=@llm-node/engine-onnx');
const modelDir = join(cacheDir, 'models', `onnx-dim${shape.dim}-l${shape.layers}`);
if (!existsSync(join(modelDir, 'model.onnx'))) await makeOnnxModel(modelDir, shape);

const text = await readTokenText(modelDir);
const pieces = llama3ChatPieces(['Hello', '!']);
const promptIds = pieces.map((piece) => text.idOf(piece));

const manifest = JSON.parse(readFileSync(join(pluginDir, 'manifest.json'), 'utf8'));
const engine = openEngine(join(pluginDir, manifest.binary), { expectedId: 'onnx' });
await engine.init({ gpuBackend: 'cpu', pluginDir, threads });
await engine.loadModel('bench', { path: modelDir, format: 'onnx', contextLength: promptIds.length + tokens + 1, parallel: 1 });
const reference = await openReference(modelDir, { threads });

async function pluginRun() {
  const started = performance.now();
  const generation = engine.generate({
    modelId: 'bench',
    prompt: pieces.join(''),
    parseSpecial: true,
    maxTokens: tokens,
    temperature: 0,
    ignoreEos: true,
  });
  for await (const _ of generation);
  const { completionTokens } = await generation.result;
  return completionTokens / ((performance.now() - started) / 1000);
}

async function referenceRun() {
  const started = performance.now();
  const out = await reference.greedy(promptIds, tokens);
  return out.length / ((performance.now() - started) / 1000);
}

const results = { plugin: [], reference: [] };
await pluginRun(); // warm both sessions' first run (allocations, thread pools)
await referenceRun();
for (let round = 1; round <= rounds; round++) {
  log(`round ${round}/${rounds}`);
  results.plugin.push(await pluginRun());
  results.reference.push(await referenceRun());
}
await engine.close();
await reference.release();

const plugin = median(results.plugin);
const direct = median(results.reference);
console.log(
  `model: dim ${shape.dim}, ${shape.layers} layers, Llama 3 vocabulary; ${tokens} tokens greedy, ${threads} threads, ${rounds} rounds`,
);
console.log(`onnx plugin (binding):        ${plugin.toFixed(1)} tokens/s  (${results.plugin.map((r) => r.toFixed(1)).join(', ')})`);
console.log(`ONNX Runtime (onnxruntime-node): ${direct.toFixed(1)} tokens/s  (${results.reference.map((r) => r.toFixed(1)).join(', ')})`);
console.log(`ratio plugin / ONNX Runtime: ${(plugin / direct).toFixed(2)}`);
