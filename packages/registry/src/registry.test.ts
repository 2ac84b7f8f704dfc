import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { Registry } from './registry.js';
import type { RegistryOptions } from './types.js';
import { GiB, cpuGpu, fakeOpener, fixedSampler, writeFakePlugin } from './testing/fake-engine.js';
import type { FakeEngineBehaviour } from './testing/fake-engine.js';
import type { GpuDetection, VramSampler } from '@llm-node/gpu-detect';
import { writeGgufModel } from './testing/index.js';

let root: string;
let enginesDir: string;
let modelsDir: string;
const registries: Registry[] = [];

beforeEach(async () => {
  root = await mkdtemp(join(tmpdir(), 'registry-'));
  enginesDir = join(root, 'engines');
  modelsDir = join(root, 'models');
  await mkdir(enginesDir);
  await mkdir(modelsDir);
});
afterEach(async () => {
  await Promise.all(registries.splice(0).map((r) => r.close()));
  await rm(root, { recursive: true, force: true });
});

async function setUp(behaviour: FakeEngineBehaviour = {}, options: Partial<RegistryOptions> = {}) {
  await writeFakePlugin(enginesDir, { id: 'llama_cpp', architectures: ['llama', 'mistral'] });
  const openEngine = fakeOpener({ llama_cpp: behaviour });
  const sampler = fixedSampler(64 * GiB);
  const registry = await Registry.create({ enginesDirs: [enginesDir], modelsDir, gpu: cpuGpu(), openEngine, sampler, ...options });
  registries.push(registry);
  return { registry, engine: openEngine.opened.get('llama_cpp')!, sampler };
}

const model = (name: string, architecture = 'llama', extra = {}) =>
  writeGgufModel(join(modelsDir, `${name}.gguf`), { architecture, contextLength: 8192, ...extra });

describe('Registry model loading', () => {
  it('loads a model on the engine that supports its format and architecture', async () => {
    const { registry, engine } = await setUp({ estimate: 2 * GiB });
    await model('llama-3.2-1b-Q4_K_M');
    const loaded = await registry.loadModel('llama-3.2-1b-Q4_K_M', { format: 'gguf' });
    expect(loaded).toMatchObject({
      id: 'llama-3.2-1b-Q4_K_M',
      engineId: 'llama_cpp',
      format: 'gguf',
      architecture: 'llama',
      quantization: 'Q4_K_M',
      contextLength: 4096,
      parallel: 4,
      vramBytes: 2 * GiB,
      activeRequests: 0,
    });
    expect(engine.loads).toEqual([
      {
        modelId: 'llama-3.2-1b-Q4_K_M',
        params: {
          path: join(modelsDir, 'llama-3.2-1b-Q4_K_M.gguf'),
          format: 'gguf',
          contextLength: 4096,
          parallel: 4,
          quantization: 'Q4_K_M',
          vramBudgetBytes: 64 * GiB,
        },
      },
    ]);
    expect(registry.models().map((m) => m.id)).toEqual(['llama-3.2-1b-Q4_K_M']);
  });

  it('passes the requested context length and parallel sequences, and defaults to the trained length below 4096 and 4 sequences', async () => {
    const { registry, engine } = await setUp();
    await model('small', 'llama', { contextLength: 2048 });
    await model('big');
    await registry.loadModel('small');
    await registry.loadModel('big', { contextLength: 16384, parallel: 2 });
    expect(engine.loads.map((l) => [l.params.contextLength, l.params.parallel])).toEqual([
      [2048, 4],
      [16384, 2],
    ]);
  });

  it('gives loads that name no context length or parallel sequences the defaults it was created with', async () => {
    const { registry, engine } = await setUp({}, { defaultContextLength: 1024, defaultParallel: 4 });
    await model('m');
    await registry.loadModel('m');
    expect(engine.loads.map((l) => [l.params.contextLength, l.params.parallel])).toEqual([[1024, 4]]);
  });

  it('returns the loaded model on a repeated load and shares one load between concurrent ones', async () => {
    const { registry, engine } = await setUp({ gateLoads: true });
    await model('m');
    const both = Promise.all([registry.loadModel('m'), registry.loadModel('m')]);
    await expect.poll(() => engine.loads.length).toBe(1);
    engine.releaseLoads();
    const [a, b] = await both;
    expect(a.loadedAt).toBe(b.loadedAt);
    await registry.loadModel('m');
    expect(engine.loads).toHaveLength(1);
  });

  it('refuses an architecture no loaded plugin supports with the documented message', async () => {
    const { registry, engine } = await setUp();
    await model('nemo', 'nemotron');
    const error = await registry.loadModel('nemo').catch((e: unknown) => e);
    expect(error).toMatchObject({ status: 400 });
    expect(JSON.parse(JSON.stringify(error))).toEqual({
      error: {
        message: "Architecture 'nemotron' not supported by plugin 'llama_cpp'",
        type: 'unsupported_error',
        code: 'architecture_mismatch',
      },
    });
    expect(engine.loads).toEqual([]);
  });

  it('refuses a format no loaded plugin supports', async () => {
    const { registry } = await setUp();
    await mkdir(join(modelsDir, 'qwen'));
    await writeFile(join(modelsDir, 'qwen', 'config.json'), JSON.stringify({ model_type: 'qwen2' }));
    await writeFile(join(modelsDir, 'qwen', 'model.safetensors'), '');
    await expect(registry.loadModel('qwen')).rejects.toMatchObject({
      type: 'unsupported_error',
      code: 'format_mismatch',
      message: "Format 'safetensors' not supported by plugin 'llama_cpp'",
    });
  });

  it("refuses a format that is none of the manifest schema's, naming those it takes", async () => {
    const { registry } = await setUp();
    await expect(registry.loadModel('llama-3.2-1b-Q4_K_M', { format: 'ggml' as never })).rejects.toMatchObject({
      code: 'invalid_parameter',
      message: `format must be 'gguf', 'safetensors' or 'onnx', got "ggml"`,
    });
  });

  it("refuses a requested format that differs from the model's", async () => {
    const { registry } = await setUp();
    await model('m');
    await expect(registry.loadModel('m', { format: 'safetensors' })).rejects.toMatchObject({
      code: 'format_mismatch',
      type: 'invalid_request_error',
    });
    await registry.loadModel('m');
    await expect(registry.loadModel('m', { format: 'safetensors' })).rejects.toMatchObject({ code: 'format_mismatch' });
  });

  it('says no_engine when no plugin loaded', async () => {
    const registry = await Registry.create({
      enginesDirs: [enginesDir],
      modelsDir,
      gpu: cpuGpu(),
      openEngine: fakeOpener(),
      sampler: fixedSampler(GiB),
    });
    registries.push(registry);
    await model('m');
    await expect(registry.loadModel('m')).rejects.toMatchObject({ code: 'no_engine', status: 503 });
  });

  it.each([
    ['../secret', 'invalid_model_id', 400],
    ['absent', 'model_not_found', 404],
  ])('answers %j with %s', async (id, code, status) => {
    const { registry } = await setUp();
    await expect(registry.loadModel(id)).rejects.toMatchObject({ code, status });
  });

  it.each([
    [{ contextLength: 0 }, 'contextLength'],
    [{ parallel: 1.5 }, 'parallel'],
    [{ format: 'ggml' as never }, 'format'],
  ])('refuses load options %j', async (options, field) => {
    const { registry } = await setUp();
    await expect(registry.loadModel('m', options)).rejects.toMatchObject({
      code: 'invalid_parameter',
      message: expect.stringContaining(field),
    });
  });

  it("maps an engine's load failure to an error body with the plugin's message", async () => {
    const { registry } = await setUp({ failLoad: { code: 'out_of_memory', message: 'cudaMalloc failed: out of memory' } });
    await model('m');
    await expect(registry.loadModel('m')).rejects.toMatchObject({
      type: 'resource_error',
      code: 'oom_vram',
      status: 507,
      message: expect.stringContaining('cudaMalloc failed'),
    });
    expect(registry.models()).toEqual([]);
  });

  it('reads ahead the models it is told to, leaving a bad name, a missing model and a broken file for their loads to report', async () => {
    await model('m');
    await writeFile(join(modelsDir, 'broken.gguf'), 'not a GGUF file');
    const { registry } = await setUp({}, { readAhead: ['m', '../outside', 'missing', 'broken'] });
    expect((await registry.loadModel('m')).id).toBe('m');
    await expect(registry.loadModel('../outside')).rejects.toMatchObject({ status: 400 });
    await expect(registry.loadModel('missing')).rejects.toMatchObject({ status: 404 });
    await expect(registry.loadModel('broken')).rejects.toMatchObject({ code: 'model_corrupt' });
  });
});

describe('Registry VRAM admission', () => {
  it('refuses a model larger than the limit with the documented message', async () => {
    const { registry, engine } = await setUp({ estimate: 16 * GiB }, { vramLimitBytes: 8 * GiB });
    await model('big');
    const error = await registry.loadModel('big').catch((e: unknown) => e);
    expect(JSON.parse(JSON.stringify(error))).toEqual({
      error: { message: 'Insufficient VRAM: required 16GB, available 8GB', type: 'resource_error', code: 'oom_vram' },
    });
    expect(engine.loads).toEqual([]);
  });

  it('counts what loaded models hold against the limit', async () => {
    const { registry } = await setUp({ estimate: 3 * GiB }, { vramLimitBytes: 8 * GiB });
    await model('a');
    await model('b');
    await model('c');
    await registry.loadModel('a');
    await registry.loadModel('b');
    await expect(registry.loadModel('c')).rejects.toMatchObject({ message: 'Insufficient VRAM: required 3GB, available 2GB' });
    await registry.unloadModel('a');
    await expect(registry.loadModel('c')).resolves.toMatchObject({ vramBytes: 3 * GiB });
  });

  it('admits against detected free memory when it is below the limit', async () => {
    const { registry, sampler } = await setUp({ estimate: 2 * GiB });
    sampler.freeBytes = 1.5 * GiB;
    await model('m');
    await expect(registry.loadModel('m')).rejects.toMatchObject({ message: 'Insufficient VRAM: required 2GB, available 1.5GB' });
  });

  it('uses the formula when the engine offers no estimate', async () => {
    const { registry } = await setUp({ estimate: null }, { vramLimitBytes: 8 * GiB });
    // 10 GiB of weights on a model with no shape: weights + the 128 MiB compute margin + 3 tokens of logits.
    await model('heavy', 'llama', { tensorDataBytes: 10 * GiB });
    await expect(registry.loadModel('heavy')).rejects.toMatchObject({ message: 'Insufficient VRAM: required 10.1GB, available 8GB' });
  });

  it('admits one load at a time, so two loads cannot spend the same free memory', async () => {
    const { registry, engine } = await setUp({ estimate: 5 * GiB, gateLoads: true }, { vramLimitBytes: 8 * GiB });
    await model('a');
    await model('b');
    const results = Promise.allSettled([registry.loadModel('a'), registry.loadModel('b')]);
    await expect.poll(() => engine.loads.length).toBe(1);
    engine.releaseLoads();
    // Whichever reaches admission first loads; the other sees what is left.
    const outcomes = (await results).map((r) => (r.status === 'fulfilled' ? 'loaded' : (r.reason as { code: string }).code));
    expect(outcomes.sort()).toEqual(['loaded', 'oom_vram']);
  });

  it('reports the limit, what models hold, and detected memory', async () => {
    const { registry, sampler } = await setUp({ estimate: 2 * GiB }, { vramLimitBytes: 8 * GiB });
    sampler.freeBytes = 50 * GiB;
    await model('m');
    await registry.loadModel('m');
    expect(await registry.vramStatus()).toEqual({
      backend: 'cpu',
      deviceIndex: 0,
      limitBytes: 8 * GiB,
      heldBytes: 2 * GiB,
      usedBytes: 14 * GiB,
      freeBytes: 50 * GiB,
      availableBytes: 6 * GiB,
      devices: [{ index: 0, totalBytes: 64 * GiB, usedBytes: 14 * GiB, freeBytes: 50 * GiB }],
    });
  });

  it("defaults the limit to the device's total and passes it to engine_init", async () => {
    const { registry } = await setUp({}, { gpu: cpuGpu(12 * GiB) });
    expect((await registry.vramStatus()).limitBytes).toBe(12 * GiB);
  });

  it('admits against the one device the engines run on, not all devices together', async () => {
    const gpu: GpuDetection = {
      backend: 'cuda',
      source: 'test',
      devices: [
        { index: 0, name: 'small', totalBytes: 8 * GiB, freeBytes: 8 * GiB, unifiedMemory: false },
        { index: 1, name: 'large', totalBytes: 24 * GiB, freeBytes: 20 * GiB, unifiedMemory: false },
      ],
    };
    const sampler: VramSampler = {
      sample: async () =>
        gpu.devices.map((d) => ({
          index: d.index,
          totalBytes: d.totalBytes,
          usedBytes: d.totalBytes - d.freeBytes!,
          freeBytes: d.freeBytes,
        })),
    };
    await writeFakePlugin(enginesDir, { id: 'llama_cpp', gpu_backend: 'cuda' });
    const openEngine = fakeOpener({ llama_cpp: { estimate: 12 * GiB } });
    const onDevice0 = await Registry.create({ enginesDirs: [enginesDir], modelsDir, gpu, openEngine, sampler });
    registries.push(onDevice0);
    await model('m');
    // 12 GiB fits the 20 GiB free on device 1 but not device 0: together they would have admitted it.
    await expect(onDevice0.loadModel('m')).rejects.toMatchObject({
      code: 'oom_vram',
      message: 'Insufficient VRAM: required 12GB, available 8GB',
    });
    await onDevice0.close();

    const onDevice1 = await Registry.create({ enginesDirs: [enginesDir], modelsDir, gpu, openEngine, sampler, deviceIndex: 1 });
    registries.push(onDevice1);
    expect(openEngine.opened.get('llama_cpp')!.initConfig).toMatchObject({ deviceIndex: 1, vramBudgetBytes: 24 * GiB });
    expect(await onDevice1.vramStatus()).toMatchObject({
      deviceIndex: 1,
      limitBytes: 24 * GiB,
      freeBytes: 20 * GiB,
      availableBytes: 20 * GiB,
    });
    await expect(onDevice1.loadModel('m')).resolves.toMatchObject({ vramBytes: 12 * GiB });
  });

  it('refuses a device the detection did not find', async () => {
    await expect(
      Registry.create({
        enginesDirs: [enginesDir],
        modelsDir,
        gpu: cpuGpu(),
        openEngine: fakeOpener(),
        sampler: fixedSampler(GiB),
        deviceIndex: 2,
      }),
    ).rejects.toMatchObject({
      code: 'no_such_device',
      message: 'There is no cpu device 2: the devices are 0',
    });
  });
});

describe('Registry leases and unloading', () => {
  it('loads on first use and counts active requests until released', async () => {
    const { registry, engine } = await setUp();
    await model('m');
    const lease = await registry.acquireModel('m');
    expect(engine.loads.map((load) => load.modelId)).toEqual(['m']);
    expect(lease.model.activeRequests).toBe(1);
    const second = await registry.acquireModel('m');
    expect(registry.models()[0]!.activeRequests).toBe(2);
    lease.release();
    lease.release();
    expect(registry.models()[0]!.activeRequests).toBe(1);
    second.release();
    expect(registry.models()[0]!.activeRequests).toBe(0);
    expect(engine.loads).toHaveLength(1);
  });

  it('unloads the least recently used idle model, never one in use', async () => {
    const { registry, engine } = await setUp();
    for (const name of ['a', 'b', 'c']) await model(name);
    const a = await registry.acquireModel('a');
    const b = await registry.acquireModel('b');
    const c = await registry.acquireModel('c');
    b.release();
    c.release();
    // a is oldest but in use; b was released before c.
    await expect(registry.unloadIdleLeastRecentlyUsed()).resolves.toMatchObject({ id: 'b' });
    await expect(registry.unloadIdleLeastRecentlyUsed()).resolves.toMatchObject({ id: 'c' });
    await expect(registry.unloadIdleLeastRecentlyUsed()).resolves.toBeNull();
    expect(engine.unloads).toEqual(['b', 'c']);
    a.release();
    expect(registry.models().map((m) => m.id)).toEqual(['a']);
  });

  it('refuses to unload a model in use, or one that is not loaded', async () => {
    const { registry } = await setUp();
    await model('m');
    const lease = await registry.acquireModel('m');
    await expect(registry.unloadModel('m')).rejects.toMatchObject({ code: 'model_in_use', status: 409 });
    lease.release();
    await registry.unloadModel('m');
    await expect(registry.unloadModel('m')).rejects.toMatchObject({ code: 'model_not_loaded', status: 404 });
    await expect(registry.unloadModel('../m')).rejects.toMatchObject({ code: 'invalid_model_id' });
  });

  it('closes once: unloads idle models, closes every engine, then refuses new work', async () => {
    const { registry, engine } = await setUp();
    await model('m');
    await registry.loadModel('m');
    await Promise.all([registry.close(), registry.close()]);
    expect(engine.unloads).toEqual(['m']);
    expect(engine.closed).toBe(true);
    expect(registry.models()).toEqual([]);
    await expect(registry.loadModel('m')).rejects.toMatchObject({ code: 'shutting_down', status: 503 });
    await expect(registry.acquireModel('m')).rejects.toMatchObject({ code: 'shutting_down' });
  });
});

describe('Registry activity', () => {
  it('counts the requests waiting for a model to load as waiting, before and after the load', async () => {
    const { registry, engine } = await setUp({ gateLoads: true });
    await model('m');
    const leases = Promise.all([registry.acquireModel('m'), registry.acquireModel('m')]);
    await expect.poll(() => engine.loads.length).toBe(1);
    expect(await registry.modelActivity()).toEqual([{ id: 'm', running: 0, waiting: 2, parallel: 0, kvCells: null, kvCacheUsage: null }]);
    engine.releaseLoads();
    for (const lease of await leases) lease.release();
    // Loaded, and an engine without stats: the node counts the generations itself (none).
    expect(await registry.modelActivity()).toEqual([{ id: 'm', running: 0, waiting: 0, parallel: 4, kvCells: null, kvCacheUsage: null }]);
  });
});

describe('Registry under racing and careless requests', () => {
  it('makes a request for a model being unloaded wait for the unload and load it again, never 404', async () => {
    const { registry, engine } = await setUp({ gateUnloads: true });
    await model('m');
    await registry.loadModel('m');
    const unloading = registry.unloadModel('m');
    await expect.poll(() => engine.unloads).toEqual(['m']); // the engine is unloading it now
    let leased = false;
    const acquiring = registry.acquireModel('m').then((lease) => {
      leased = true;
      return lease;
    });
    await new Promise((resolve) => setTimeout(resolve, 20));
    expect(leased).toBe(false); // waits for the unload
    engine.releaseUnloads();
    await unloading;
    const lease = await acquiring;
    expect(lease.model).toMatchObject({ id: 'm', activeRequests: 1 });
    expect(engine.loads.map((l) => l.modelId)).toEqual(['m', 'm']);
    lease.release();
    const closing = registry.close(); // its unload is gated too
    await expect.poll(() => engine.unloads.length).toBe(2);
    engine.releaseUnloads();
    await closing;
  });

  it('answers a second load of one id with other settings with 409, whether the first is done or in progress', async () => {
    const { registry, engine } = await setUp({ gateLoads: true });
    await model('m');
    const first = registry.loadModel('m', { contextLength: 512 });
    const second = registry.loadModel('m', { contextLength: 2048 });
    const same = registry.loadModel('m', { contextLength: 512 });
    await expect.poll(() => engine.loads.length).toBe(1); // the engine is loading it now
    engine.releaseLoads();
    await expect(first).resolves.toMatchObject({ contextLength: 512 });
    await expect(second).rejects.toMatchObject({
      code: 'model_loaded_differently',
      status: 409,
      message: expect.stringContaining('context_length 512, not 2048'),
    });
    await expect(same).resolves.toMatchObject({ contextLength: 512 });
    await expect(registry.loadModel('m', { parallel: 2 })).rejects.toMatchObject({ code: 'model_loaded_differently' });
    await expect(registry.loadModel('m')).resolves.toMatchObject({ id: 'm' }); // naming nothing is no clash
    expect(engine.loads).toHaveLength(1);
  });

  it("leaves a model used within idleForMs to the monitor's next look", async () => {
    const { registry } = await setUp();
    await model('m');
    (await registry.acquireModel('m')).release();
    await expect(registry.unloadIdleLeastRecentlyUsed({ idleForMs: 60_000 })).resolves.toBeNull();
    await expect(registry.unloadIdleLeastRecentlyUsed({ idleForMs: 0 })).resolves.toMatchObject({ id: 'm' });
  });

  it('says a model is missing without naming the models folder', async () => {
    const { registry } = await setUp();
    const refused: Error = await registry.loadModel('absent').then(
      () => new Error('loaded'),
      (error: Error) => error,
    );
    expect(refused).toMatchObject({ code: 'model_not_found' });
    expect(refused.message).not.toContain(modelsDir);
  });
});

describe('Registry catalogue', () => {
  it('lists every model of the models folder with its engine, size, estimate and state, and says why one cannot be served', async () => {
    const { registry } = await setUp({ estimate: 2 * GiB });
    await model('loaded-one');
    await model('spare', 'mistral', { tensorDataBytes: 4096 });
    await model('phi', 'phi3');
    await writeFile(join(modelsDir, 'broken.gguf'), 'not a GGUF file');
    await mkdir(join(modelsDir, 'family'));
    await writeGgufModel(join(modelsDir, 'family', 'family-Q4_K_M.gguf'), { architecture: 'llama' });
    await writeGgufModel(join(modelsDir, 'family', 'family-Q8_0.gguf'), { architecture: 'llama' });
    await writeFile(join(modelsDir, 'notes.txt'), 'not a model');
    await registry.loadModel('loaded-one');

    const entries = await registry.catalogue();
    expect(entries.map((e) => [e.id, e.state, e.engineId, e.error?.code ?? null])).toEqual([
      ['broken', 'unusable', null, 'model_corrupt'],
      ['family:Q4_K_M', 'available', 'llama_cpp', null],
      ['family:Q8_0', 'available', 'llama_cpp', null],
      ['loaded-one', 'loaded', 'llama_cpp', null],
      ['phi', 'unusable', null, 'architecture_mismatch'],
      ['spare', 'available', 'llama_cpp', null],
    ]);
    const spare = entries.find((e) => e.id === 'spare')!;
    expect(spare).toMatchObject({ format: 'gguf', architecture: 'mistral', loaded: null });
    expect(spare.sizeBytes).toBeGreaterThan(4096);
    expect(spare.estimatedVramBytes).toBeGreaterThan(0);
    expect(entries.find((e) => e.id === 'loaded-one')!.loaded).toMatchObject({ id: 'loaded-one', vramBytes: 2 * GiB });
    // Every id it lists loads as listed.
    await expect(registry.loadModel('family:Q8_0')).resolves.toMatchObject({ quantization: 'Q8_0' });
  });

  it('lists a model while it loads and after it unloads', async () => {
    const { registry, engine } = await setUp({ gateLoads: true });
    await model('m');
    const loading = registry.loadModel('m');
    await expect.poll(() => engine.loads.length).toBe(1);
    expect((await registry.catalogue()).map((e) => e.state)).toEqual(['loading']);
    engine.releaseLoads();
    await loading;
    await registry.unloadModel('m');
    expect((await registry.catalogue()).map((e) => e.state)).toEqual(['available']);
  });
});
