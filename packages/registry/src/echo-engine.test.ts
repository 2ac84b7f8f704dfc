import { mkdir, mkdtemp, rm, stat, truncate, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { buildTestPlugin, installTestPlugin } from '@llm-node/abi-native/testing';
import { afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { LOAD_STARTING, Registry } from './registry.js';
import type { LoadProgress } from './index.js';
import { GiB, cpuGpu, fixedSampler } from './testing/fake-engine.js';
import { writeGgufModel } from './testing/index.js';

// The product path end to end: the real binding, real compiled plugins, models written to disk.

let echo: string;
let minimal: string;
beforeAll(async () => {
  echo = await buildTestPlugin('echo');
  minimal = await buildTestPlugin('minimal');
}, 120_000);

let root: string;
let enginesDir: string;
let modelsDir: string;
let registry: Registry | undefined;
beforeEach(async () => {
  root = await mkdtemp(join(tmpdir(), 'registry-echo-'));
  enginesDir = join(root, 'engines');
  modelsDir = join(root, 'models');
  await mkdir(modelsDir, { recursive: true });
  await installTestPlugin({ enginesDir, plugin: echo, manifest: { architectures: ['llama', 'mistral'] } });
});
afterEach(async () => {
  await registry?.close();
  registry = undefined;
  await rm(root, { recursive: true, force: true });
});

async function start(vramLimitBytes?: number): Promise<Registry> {
  registry = await Registry.create({
    enginesDirs: [enginesDir],
    modelsDir,
    gpu: cpuGpu(),
    sampler: fixedSampler(32 * GiB),
    ...(vramLimitBytes === undefined ? {} : { vramLimitBytes }),
  });
  return registry;
}

async function collect(generation: AsyncIterable<{ text: string }>): Promise<string> {
  let text = '';
  for await (const chunk of generation) text += chunk.text;
  return text;
}

describe('the registry over the echo test engine', () => {
  it('loads a GGUF model, leases it for a generation, and unloads it when idle', async () => {
    const path = join(modelsDir, 'tiny-llama-Q4_K_M.gguf');
    await writeGgufModel(path, { architecture: 'llama', chatTemplate: '{{ messages }}', tensorDataBytes: 64 * 1024 });
    const size = (await stat(path)).size;
    const reg = await start();

    const loaded = await reg.loadModel('tiny-llama-Q4_K_M', { format: 'gguf', contextLength: 512 });
    // The echo engine estimates and holds the file's size; it reports the context it was given.
    expect(loaded).toMatchObject({ engineId: 'echo', architecture: 'llama', contextLength: 512, vramBytes: size, quantization: 'Q4_K_M' });
    expect(loaded.info).toMatchObject({ chatTemplate: '{{ messages }}', bosToken: '<s>', eosToken: '</s>' });

    const lease = await reg.acquireModel('tiny-llama-Q4_K_M');
    const text = await collect(lease.generate({ prompt: 'Hello big world' }));
    expect(text).toBe('Hello big world');
    await expect(reg.unloadIdleLeastRecentlyUsed()).resolves.toBeNull();
    lease.release();
    await expect(reg.unloadIdleLeastRecentlyUsed()).resolves.toMatchObject({ id: 'tiny-llama-Q4_K_M' });
    expect(reg.models()).toEqual([]);
    expect((await reg.vramStatus()).heldBytes).toBe(0);
  });

  it("admits against the engine's own estimate and refuses what does not fit", async () => {
    await writeGgufModel(join(modelsDir, 'big.gguf'), { architecture: 'llama', tensorDataBytes: 3 * 1024 * 1024 });
    const reg = await start(2 * 1024 * 1024);
    const error = await reg.loadModel('big').catch((e: unknown) => e);
    expect(JSON.parse(JSON.stringify(error))).toEqual({
      error: { message: 'Insufficient VRAM: required 3MB, available 2MB', type: 'resource_error', code: 'oom_vram' },
    });
  });

  it('refuses an architecture the manifest does not list before the engine sees the model', async () => {
    await writeGgufModel(join(modelsDir, 'nemo.gguf'), { architecture: 'nemotron' });
    const reg = await start();
    await expect(reg.loadModel('nemo')).rejects.toMatchObject({
      message: "Architecture 'nemotron' not supported by plugin 'echo'",
      code: 'architecture_mismatch',
    });
  });

  it('refuses a truncated GGUF cleanly', async () => {
    const path = join(modelsDir, 'cut.gguf');
    await writeGgufModel(path, { architecture: 'llama', chatTemplate: 'x'.repeat(1000) });
    await truncate(path, 200);
    const reg = await start();
    await expect(reg.loadModel('cut')).rejects.toMatchObject({ code: 'model_corrupt', status: 422 });
    expect(reg.models()).toEqual([]);
  });

  it('closes the engines with a model still leased', async () => {
    await writeGgufModel(join(modelsDir, 'm.gguf'), { architecture: 'llama' });
    const reg = await start();
    const lease = await reg.acquireModel('m');
    await reg.close();
    await expect(collect(lease.generate({ prompt: 'Hello' }))).rejects.toMatchObject({ code: 'engine_closed', status: 503 });
  });
});

describe('reloading the engines folders', () => {
  it('opens a plugin placed since, and leaves an unchanged one serving with its models', async () => {
    await writeGgufModel(join(modelsDir, 'm.gguf'), { architecture: 'llama' });
    await writeGgufModel(join(modelsDir, 'custom.gguf'), { architecture: 'custom' });
    const reg = await start();
    await reg.loadModel('m');
    await expect(reg.loadModel('custom')).rejects.toMatchObject({ code: 'architecture_mismatch' });

    await installTestPlugin({ enginesDir, plugin: minimal, manifest: { architectures: ['custom'] } });
    expect(await reg.reloadEngines()).toEqual({ added: ['my_engine'], replaced: [], removed: [] });
    expect(reg.models().map((m) => m.id)).toEqual(['m']);
    expect(reg.engines.map((e) => [e.id, e.status])).toEqual([
      ['echo', 'loaded'],
      ['my_engine', 'loaded'],
    ]);
    await expect(reg.loadModel('custom')).resolves.toMatchObject({ engineId: 'my_engine' });
    expect(await reg.reloadEngines()).toEqual({ added: [], replaced: [], removed: [] });
  });

  it('lets a generation on a rebuilt plugin finish, then serves its model from the new build', async () => {
    const slow = await buildTestPlugin('echo', { defines: { ECHO_TOKEN_DELAY_US: 20_000 } });
    await rm(join(enginesDir, 'echo'), { recursive: true });
    await installTestPlugin({ enginesDir, plugin: slow, manifest: { architectures: ['llama'], version: '1.0.0' } });
    await writeGgufModel(join(modelsDir, 'm.gguf'), { architecture: 'llama' });
    const reg = await start();
    const lease = await reg.acquireModel('m');
    const generation = lease.generate({ prompt: 'a', ignoreEos: true, maxTokens: 30 });
    let tokens = (await generation.next()).value!.tokenCount;

    await installTestPlugin({ enginesDir, plugin: echo, manifest: { architectures: ['llama'], version: '2.0.0' } });
    expect(await reg.reloadEngines()).toEqual({ added: [], replaced: ['echo'], removed: [] });
    expect(reg.engines[0]!.manifest!.version).toBe('2.0.0');
    const next = reg.acquireModel('m'); // waits for the old build's last request
    for await (const chunk of generation) tokens += chunk.tokenCount;
    expect(tokens).toBe(30); // every one, from the old build
    lease.release();
    const again = await next;
    await expect(collect(again.generate({ prompt: 'Hello big world' }))).resolves.toBe('Hello big world');
    again.release();
  });

  it('closes a plugin whose folder is gone once its requests are done', async () => {
    await writeGgufModel(join(modelsDir, 'm.gguf'), { architecture: 'llama' });
    const reg = await start();
    await reg.loadModel('m');
    await rm(join(enginesDir, 'echo'), { recursive: true });
    expect(await reg.reloadEngines()).toEqual({ added: [], replaced: [], removed: ['echo'] });
    await expect.poll(() => reg.models()).toEqual([]);
    await expect(reg.loadModel('m')).rejects.toMatchObject({ code: 'no_engine' });
  });
});

describe("a load's progress", () => {
  it("reaches every caller waiting on the load, the registry's own starting phase first, and the log once per phase and quarter", async () => {
    const slowLoad = await buildTestPlugin('echo', { defines: { ENGINE_ID: 'echo_slow_load', ECHO_LOAD_DELAY_US: 200_000 } });
    await installTestPlugin({ enginesDir, plugin: slowLoad, manifest: { architectures: ['slow'] } });
    await writeGgufModel(join(modelsDir, 'slow.gguf'), { architecture: 'slow' });
    const lines: { phase?: string; percent?: number }[] = [];
    const log = (fields: object, message: string) => message === 'loading' && lines.push(fields);
    registry = await Registry.create({
      enginesDirs: [enginesDir],
      modelsDir,
      gpu: cpuGpu(),
      sampler: fixedSampler(32 * GiB),
      logger: { info: log, warn: log, error: log },
    });
    const first: LoadProgress[] = [];
    const second: LoadProgress[] = [];
    await Promise.all([registry.loadModel('slow', {}, (p) => first.push(p)), registry.loadModel('slow', {}, (p) => second.push(p))]);
    expect(first.slice(0, 5)).toEqual([
      { phase: LOAD_STARTING, fraction: 0 },
      ...[0, 0.25, 0.5, 0.75].map((fraction) => ({ phase: 'weights', fraction })),
    ]);
    expect(second.length).toBeGreaterThanOrEqual(3); // it joined a moment later
    expect(second.every((p) => [LOAD_STARTING, 'weights', 'context'].includes(p.phase))).toBe(true);
    expect(lines.slice(0, 5)).toEqual([
      { model: 'slow', phase: LOAD_STARTING, percent: 0 },
      ...[0, 25, 50, 75].map((percent) => ({ model: 'slow', phase: 'weights', percent })),
    ]);
  });
});

describe('what models are doing, as load balancers read it', () => {
  it("takes running generations and KV use from an engine's stats", async () => {
    const slow = await buildTestPlugin('echo', { defines: { ENGINE_ID: 'echo_slow', ECHO_TOKEN_DELAY_US: 20_000 } });
    await installTestPlugin({ enginesDir, plugin: slow, manifest: { architectures: ['slow'] } });
    await writeGgufModel(join(modelsDir, 'slow.gguf'), { architecture: 'slow' });
    const reg = await start();
    await reg.loadModel('slow', { parallel: 2, contextLength: 100 });
    expect(await reg.modelActivity()).toEqual([{ id: 'slow', running: 0, waiting: 0, parallel: 2, kvCells: 200, kvCacheUsage: 0 }]);
    const lease = await reg.acquireModel('slow');
    const generations = [0, 1].map(() => lease.generate({ prompt: 'a b c d', ignoreEos: true, maxTokens: 90 }));
    const received = [0, 0];
    for (const [i, generation] of generations.entries()) {
      while (received[i]! < 6) received[i] += (await generation.next()).value!.tokenCount;
    }
    const [activity] = await reg.modelActivity();
    expect(activity).toMatchObject({ running: 2, waiting: 0 });
    // Each holds its 4 prompt cells and one per token emitted (a few may not have reached this process yet).
    const atLeast = (4 + received[0]! + 4 + received[1]!) / 200;
    expect(activity!.kvCacheUsage).toBeGreaterThanOrEqual(atLeast);
    expect(activity!.kvCacheUsage).toBeLessThan(atLeast + 0.1);
    await Promise.all(generations.map((generation) => generation.return!()));
    lease.release();
    await expect.poll(async () => (await reg.modelActivity())[0]).toMatchObject({ running: 0, kvCacheUsage: 0 });
  });

  it('counts generations against `parallel` itself for an engine without stats', async () => {
    await installTestPlugin({ enginesDir, plugin: await buildTestPlugin('faulty'), manifest: { architectures: ['faulty'] } });
    await writeGgufModel(join(modelsDir, 'f.gguf'), { architecture: 'faulty' });
    registry = await Registry.create({
      enginesDirs: [enginesDir],
      modelsDir,
      gpu: cpuGpu(),
      sampler: fixedSampler(32 * GiB),
      engineTimeouts: { cancelMs: 200 },
    });
    await registry.loadModel('f', { parallel: 1 });
    const lease = await registry.acquireModel('f');
    const cancel = new AbortController();
    const hung = [0, 1, 2].map(() => lease.generate({ prompt: 'hang-polling' }, { signal: cancel.signal }).result.catch(() => undefined));
    expect(await registry.modelActivity()).toEqual([{ id: 'f', running: 1, waiting: 2, parallel: 1, kvCells: null, kvCacheUsage: null }]);
    cancel.abort(); // they ignore it, and their host is ended within cancelMs
    await Promise.all(hung);
  });
});

describe("the registry over the plugin guide's minimal plugin", () => {
  it('loads a safetensors model through engine_load_model, one at a time', async () => {
    // The plugin guide's manifest for it, on the cpu backend.
    await installTestPlugin({ enginesDir, plugin: minimal, manifest: { architectures: ['custom'], formats: ['safetensors'] } });
    for (const name of ['custom-a', 'custom-b']) {
      await mkdir(join(modelsDir, name));
      await writeFile(join(modelsDir, name, 'config.json'), JSON.stringify({ model_type: 'custom' }));
      await writeFile(join(modelsDir, name, 'model.safetensors'), 'weights');
    }
    const reg = await start();
    expect(reg.engines.map((e) => [e.id, e.status])).toEqual([
      ['echo', 'loaded'],
      ['my_engine', 'loaded'],
    ]);
    // It reports no VRAM, so the registry holds its own estimate: 7 bytes of weights and the compute margin.
    await expect(reg.loadModel('custom-a', { format: 'safetensors' })).resolves.toMatchObject({
      engineId: 'my_engine',
      vramBytes: 7 + 128 * 1024 * 1024,
    });
    await expect(reg.loadModel('custom-b')).rejects.toMatchObject({
      type: 'unsupported_error',
      message: expect.stringContaining("unload 'custom-a' first"),
    });
    await reg.unloadModel('custom-a');
    await expect(reg.loadModel('custom-b')).resolves.toMatchObject({ id: 'custom-b' });
  });
});

describe("what the registry lets clients read of an engine's errors", () => {
  it('shows paths inside the models and engines folders relative to them', async () => {
    await installTestPlugin({ enginesDir, plugin: await buildTestPlugin('failing'), manifest: { architectures: ['failing'] } });
    await installTestPlugin({ enginesDir, plugin: echo, id: 'impostor', manifest: { id: 'impostor' } });
    await writeGgufModel(join(modelsDir, 'broken.gguf'), { architecture: 'failing' });
    const reg = await start();
    const refused: Error = await reg.loadModel('broken').then(
      () => new Error('loaded'),
      (error: Error) => error,
    );
    expect(refused).toMatchObject({ code: 'model_corrupt', message: "broken.gguf: not a model file (bad magic) for model 'broken'" });
    expect((refused.cause as Error).message).toContain(modelsDir); // the log keeps the whole path
    const impostor = reg.engines.find((e) => e.path.includes('impostor'))!;
    expect(impostor.error).toMatchObject({ code: 'id_mismatch' });
    expect(impostor.error!.message).not.toContain(root);
  });
});
