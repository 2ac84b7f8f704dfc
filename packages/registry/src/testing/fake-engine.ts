// Test doubles for the registry's own unit tests, left out of the build (not in dist, not in ./testing). The
// product path, and the tests of plugin folders with binaries, use the real binding and abi-native's test plugins.
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { EngineError } from '@llm-node/abi-native';
import type {
  Engine,
  EngineCapability,
  EngineErrorCode,
  EngineExit,
  EngineInitConfig,
  LoadedModelInfo,
  ModelLoadParams,
} from '@llm-node/abi-native';
import type { GpuDetection, VramSample, VramSampler } from '@llm-node/gpu-detect';
import type { OpenEngine } from '../discovery.js';

export const GiB = 2 ** 30;

export interface FakeEngineBehaviour {
  capabilities?: EngineCapability[];
  /** What estimateVram answers; null: no estimate (the registry's formula applies). */
  estimate?: number | null;
  /** LoadedModelInfo.vramBytes for every load; default: the estimate, else 0. */
  vramBytes?: number;
  failLoad?: { code: EngineErrorCode; message: string };
  /** Resolves each loadModel only when the test calls releaseLoads(). */
  gateLoads?: boolean;
  /** Resolves each unloadModel only when the test calls releaseUnloads(). */
  gateUnloads?: boolean;
}

export interface FakeEngine extends Engine {
  /** What init() was given. */
  initConfig: EngineInitConfig | null;
  loads: { modelId: string; params: ModelLoadParams }[];
  unloads: string[];
  closed: boolean;
  releaseLoads(): void;
  releaseUnloads(): void;
}

export function fakeEngine(path: string, id: string, behaviour: FakeEngineBehaviour = {}): FakeEngine {
  const gates: (() => void)[] = [];
  const unloadGates: (() => void)[] = [];
  let closed!: (exit: EngineExit) => void;
  const exited = new Promise<EngineExit>((resolve) => (closed = resolve));
  const engine: FakeEngine = {
    path,
    info: { abiVersion: 1, id, version: '1.0.0', threadSafe: true, jsonSchema: false, logitBias: false },
    capabilities: behaviour.capabilities ?? ['generate_stream', 'model_load', 'model_estimate_vram', 'last_error'],
    initConfig: null,
    loads: [],
    unloads: [],
    closed: false,
    releaseLoads: () => {
      for (const open of gates.splice(0)) open();
    },
    releaseUnloads: () => {
      for (const open of unloadGates.splice(0)) open();
    },
    async init(config) {
      engine.initConfig = config;
    },
    async loadModel(modelId, params): Promise<LoadedModelInfo> {
      engine.loads.push({ modelId, params });
      if (behaviour.gateLoads) await new Promise<void>((open) => gates.push(open));
      if (behaviour.failLoad) throw new EngineError(behaviour.failLoad.code, behaviour.failLoad.message);
      return { contextLength: params.contextLength ?? 0, vramBytes: behaviour.vramBytes ?? behaviour.estimate ?? 0, embeddingLength: 0 };
    },
    async unloadModel(modelId) {
      engine.unloads.push(modelId);
      if (behaviour.gateUnloads) await new Promise<void>((open) => unloadGates.push(open));
    },
    async estimateVram() {
      return behaviour.estimate ?? null;
    },
    vramUsed: async () => null,
    modelStats: async () => null,
    generate() {
      throw new Error('the fake engine does not generate');
    },
    async embed() {
      throw new Error('the fake engine does not embed');
    },
    async shutdown() {},
    async close() {
      engine.closed = true;
      closed({ code: 'closed', message: 'closed', exitCode: null, signal: null });
    },
    exited,
  };
  return engine;
}

/** An openEngine that hands out fakes by engine id (the manifest's expectedId). */
export function fakeOpener(behaviours: Record<string, FakeEngineBehaviour> = {}): OpenEngine & { opened: Map<string, FakeEngine> } {
  const opened = new Map<string, FakeEngine>();
  const open = async (path: string, { expectedId }: { expectedId: string }) => {
    const engine = fakeEngine(path, expectedId, behaviours[expectedId]);
    opened.set(expectedId, engine);
    return engine;
  };
  return Object.assign(open, { opened });
}

/** Writes <enginesDir>/<id>/<backend>/ with a manifest and a placeholder binary for a fake opener. */
export async function writeFakePlugin(
  enginesDir: string,
  manifest: { id: string; gpu_backend?: string; architectures?: string[]; formats?: string[] },
): Promise<string> {
  const full = {
    version: '1.0.0',
    abi_version: '1',
    gpu_backend: 'cpu',
    architectures: ['llama'],
    formats: ['gguf'],
    binary: 'libfake.so',
    ...manifest,
  };
  const dir = join(enginesDir, manifest.id, full.gpu_backend);
  await mkdir(dir, { recursive: true });
  await writeFile(join(dir, 'manifest.json'), JSON.stringify(full));
  await writeFile(join(dir, full.binary), 'not a real library: the fake opener never reads it');
  return dir;
}

export function cpuGpu(totalBytes = 64 * GiB): GpuDetection {
  return { backend: 'cpu', source: 'test', devices: [{ index: 0, name: 'test', totalBytes, freeBytes: totalBytes, unifiedMemory: true }] };
}

/** A sampler whose free memory the test sets. */
export function fixedSampler(freeBytes: number | null, totalBytes = 64 * GiB): VramSampler & { freeBytes: number | null } {
  const sampler = {
    freeBytes,
    async sample(): Promise<VramSample[]> {
      const free = sampler.freeBytes;
      return [{ index: 0, totalBytes, usedBytes: free === null ? null : totalBytes - free, freeBytes: free }];
    },
  };
  return sampler;
}
