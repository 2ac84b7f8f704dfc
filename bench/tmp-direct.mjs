import { mkdtemp } from 'node:fs/promises';
import os from 'node:os';
import { join } from 'node:path';
import { EngineHost, openEngine } from '@llm-node/abi-native';
import { makeModel } from '@llm-node/engine-llama-cpp';
const dir = await mkdtemp(join(os.tmpdir(), 'd-'));
await makeModel(join(dir, 'tiny.gguf'));
const plugin = '/work/main/engines/llama_cpp/cpu';
const ratios = [];
for (let round = 0; round < 8; round++) {
  const r = {};
  for (const mode of round % 2 ? ['host', 'in-process'] : ['in-process', 'host']) {
    const engine = mode === 'host' ? await EngineHost.start(join(plugin, 'libllama_engine.so')) : openEngine(join(plugin, 'libllama_engine.so'));
    await engine.init({ gpuBackend: 'cpu', pluginDir: plugin });
    await engine.loadModel('tiny', { path: join(dir, 'tiny.gguf'), format: 'gguf', contextLength: 4096, parallel: 1 });
    const g0 = engine.generate({ modelId: 'tiny', prompt: 'warm', maxTokens: 16, ignoreEos: true }); for await (const c of g0);
    const t = performance.now(); let n = 0;
    const g = engine.generate({ modelId: 'tiny', prompt: 'Tell me', maxTokens: 2000, ignoreEos: true, temperature: 0.8 });
    for await (const c of g) n += c.tokenCount;
    r[mode] = n / ((performance.now() - t) / 1000);
    await engine.close();
  }
  ratios.push(r.host / r['in-process']);
  console.log(round, Math.round(r['in-process']), Math.round(r.host), (r.host / r['in-process']).toFixed(3));
}
ratios.sort(); console.log('median', ratios[4].toFixed(3));
