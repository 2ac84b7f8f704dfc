// Discovery of 500 plugin folders: how long the registry takes to scan, open and initialise them.
// Run from the repository root after `pnpm build`:  node bench/registry/discovery.mjs [plugins] [rounds]
import { execFileSync } from 'node:child_process';
import { copyFile, mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { freemem, tmpdir, totalmem } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { performance } from 'node:perf_hooks';
import { Registry } from '@llm-node/registry';

const here = dirname(fileURLToPath(import.meta.url));
const plugins = Number(process.argv[2] ?? 500);
const rounds = Number(process.argv[3] ?? 5);
const library = process.platform === 'darwin' ? 'libbench_engine.dylib' : 'libbench_engine.so';

const work = await mkdtemp(join(tmpdir(), 'registry-bench-'));
try {
  const compiled = join(work, library);
  execFileSync('cc', [
    '-shared',
    '-fPIC',
    '-O2',
    '-I',
    join(here, '../../packages/abi-native/include'),
    '-o',
    compiled,
    join(here, 'bench_engine.c'),
  ]);
  const enginesDir = join(work, 'engines');
  for (let i = 0; i < plugins; i++) {
    const id = `bench_${String(i).padStart(4, '0')}`;
    const dir = join(enginesDir, id, 'cpu');
    await mkdir(dir, { recursive: true });
    await copyFile(compiled, join(dir, library));
    const manifest = {
      id,
      version: '1.0.0',
      abi_version: '1',
      gpu_backend: 'cpu',
      architectures: ['llama'],
      formats: ['gguf'],
      binary: library,
    };
    await writeFile(join(dir, 'manifest.json'), JSON.stringify(manifest, null, 2));
  }

  const gpu = {
    backend: 'cpu',
    source: 'os',
    devices: [{ index: 0, name: 'cpu', totalBytes: totalmem(), freeBytes: freemem(), unifiedMemory: true }],
  };
  const sampler = { sample: async () => [] };
  const { openEngine } = await import('@llm-node/abi-native');
  // Phases are told apart by what openEngine does: nothing (scan and manifests only), open without init, or
  // all; in the node's process (an engine host each would be 500 processes).
  const closed = { code: 'closed', message: 'closed', exitCode: null, signal: null };
  const stub = async (path) => ({ path, capabilities: [], init: async () => {}, close: async () => {}, exited: Promise.resolve(closed) });
  const withoutInit = async (path, options) => Object.assign(openEngine(path, options), { init: async () => {} });
  const phases = [
    ['scan + manifests + binary checks (no binary opened)', stub],
    ['+ open binaries (dlopen, ABI and id checks)', withoutInit],
    ["+ engine_init in the node's process", async (path, options) => openEngine(path, options)],
  ];

  console.log(`${plugins} plugin folders, ${rounds} rounds each, node ${process.version}, ${process.platform}-${process.arch}`);
  for (const [name, open] of phases) {
    const times = [];
    const closeTimes = [];
    for (let round = 0; round < rounds; round++) {
      const start = performance.now();
      const registry = await Registry.create({ enginesDirs: [enginesDir], modelsDir: work, gpu, sampler, openEngine: open });
      times.push(performance.now() - start);
      const loaded = registry.engines.filter((e) => e.status === 'loaded').length;
      if (loaded !== plugins)
        throw new Error(
          `${name}: ${loaded} of ${plugins} loaded: ${JSON.stringify(registry.engines.find((e) => e.error)?.error?.message)}`,
        );
      const closing = performance.now();
      await registry.close();
      closeTimes.push(performance.now() - closing);
    }
    const median = (list) => [...list].sort((a, b) => a - b)[Math.floor(list.length / 2)];
    const ms = median(times);
    console.log(
      `${name.padEnd(54)} median ${ms.toFixed(1).padStart(7)} ms  (${((ms * 1000) / plugins).toFixed(0)} µs/plugin; close ${median(closeTimes).toFixed(1)} ms)`,
    );
  }
} finally {
  await rm(work, { recursive: true, force: true });
}
