import { resolve } from 'node:path';
import { EngineHost } from '@llm-node/abi-native';
import type { Engine, EngineExit, LoadProgress, LoadProgressListener, ModelLoadParams } from '@llm-node/abi-native';
import { createVramSampler, formatSize } from '@llm-node/gpu-detect';
import type { GpuBackend, VramSampler } from '@llm-node/gpu-detect';
import { discoverEngines } from './discovery.js';
import type { DiscoveredEngine, DiscoverOptions, EngineRecord, OpenEngine } from './discovery.js';
import { engineOutputLogger } from './engine-output.js';
import { EngineSupervisor } from './engine-supervisor.js';
import type { RestartPolicy } from './engine-supervisor.js';
import { NodeError, toNodeError } from './errors.js';
import { publicError } from './public-error.js';
import { type FoundModel, fileNameParsers, listModels, locateModel, sizeOnDisk } from './model-files.js';
import { modelInfoReader } from './model-info.js';
import type { ModelInfo } from './model-info.js';
import { parseModelRef } from './model-ref.js';
import { estimateModelVram } from './vram.js';
import {
  checkLoadOptions,
  checkSameLoad,
  DEFAULT_CONTEXT_LENGTH,
  DEFAULT_PARALLEL,
  lease,
  type ModelState,
  snapshot,
} from './model-state.js';
import type {
  EngineReload,
  LoadedModel,
  LoadModelOptions,
  ModelActivity,
  ModelLease,
  RegistryLogger,
  RegistryOptions,
  VramStatus,
  CatalogueEntry,
} from './types.js';

// How long a model's activity waits for its engine's stats before counting for itself: a scrape must not
// hang on an engine host that is busy or dying.
const STATS_WAIT_MS = 250;
// How often a plugin taken out of service by a reload checks whether its last request has finished.
const RETIRE_POLL_MS = 50;

interface EngineEntry {
  record: EngineRecord;
  supervisor: EngineSupervisor | null;
  fingerprint: string | null;
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/**
 * The progress phase the registry reports itself, before the engine's own: the model was admitted and its engine
 * is asked to load it (fraction 0). A client streaming a load hears at once that it has begun, and a caller
 * knows from when on the engine is busy with it.
 */
export const LOAD_STARTING = 'starting';

/**
 * The host's engine and model state: discovered plugins (each in an engine host process, restarted when it
 * dies), loaded models, VRAM admission. Loads, unloads and the admission before each load run one at a time,
 * so two loads never spend the same free memory.
 */
export class Registry {
  readonly backend: GpuBackend;
  readonly deviceIndex: number;
  /** Every plugin folder discovery looked at; loaded ones with their supervisor and their files' fingerprint. */
  #engines: EngineEntry[] = [];
  readonly #discovery: Omit<DiscoverOptions, 'open'>;
  /** Plugins a reload took out of service, waiting for their last requests. */
  readonly #retiring = new Set<EngineEntry>();
  readonly #restartPolicy: RestartPolicy | undefined;
  readonly #modelsDir: string;
  /** The folders whose paths clients see relative to them (publicError). */
  readonly #folders: readonly string[];
  readonly #limitBytes: number;
  readonly #sampler: VramSampler;
  readonly #logger: RegistryLogger | undefined;
  readonly #defaultContextLength: number | undefined;
  readonly #defaultParallel: number;
  readonly #models = new Map<string, ModelState>();
  readonly #loading = new Map<string, { promise: Promise<LoadedModel>; options: LoadModelOptions; listeners: Set<LoadProgressListener> }>();
  readonly #readModelInfo = modelInfoReader();
  /** Requests waiting in acquireModel for a model to load, by id. */
  readonly #waitingForLoad = new Map<string, number>();
  #queueTail: Promise<unknown> = Promise.resolve();
  #closing: Promise<void> | null = null;

  private constructor(options: RegistryOptions, limitBytes: number) {
    this.backend = options.gpu.backend;
    this.deviceIndex = options.deviceIndex ?? 0;
    this.#discovery = {
      enginesDirs: options.enginesDirs,
      backend: options.gpu.backend,
      openEngine: options.openEngine ?? this.#engineHostOpener(options),
      init: { deviceIndex: this.deviceIndex, ...(Number.isFinite(limitBytes) ? { vramBudgetBytes: limitBytes } : {}) },
    };
    this.#restartPolicy = options.restartPolicy;
    this.#modelsDir = resolve(options.modelsDir);
    this.#folders = [this.#modelsDir, ...options.enginesDirs.map((dir) => resolve(dir))];
    this.#limitBytes = limitBytes;
    this.#sampler = options.sampler ?? createVramSampler(options.gpu);
    this.#logger = options.logger;
    this.#defaultContextLength = options.defaultContextLength;
    this.#defaultParallel = options.defaultParallel ?? DEFAULT_PARALLEL;
  }

  /** Discovers, opens and initialises the plugins for `gpu.backend`; throws only when an engines dir is unusable. */
  static async create(options: RegistryOptions): Promise<Registry> {
    const deviceIndex = options.deviceIndex ?? 0;
    const device = options.gpu.devices.find((d) => d.index === deviceIndex);
    if (options.gpu.devices.length > 0 && device === undefined) {
      throw new NodeError(
        `There is no ${options.gpu.backend} device ${deviceIndex}: the devices are ${options.gpu.devices.map((d) => d.index).join(', ')}`,
        {
          type: 'invalid_request_error',
          code: 'no_such_device',
        },
      );
    }
    // Without a limit or a device that states its size there is nothing to cap at but detected free memory.
    const limitBytes = options.vramLimitBytes ?? device?.totalBytes ?? Infinity;
    const registry = new Registry(options, limitBytes);
    for (const modelId of options.readAhead ?? []) registry.#readAhead(modelId);
    registry.#engines = (await discoverEngines(registry.#discovery)).map((found) => registry.#entry(found));
    return registry;
  }

  /**
   * Reads the engines folders again: a new plugin folder is opened, a removed one closed, a rebuilt one (other
   * files, sizes or times) opened anew, an unchanged one left serving. Models on a closed or replaced plugin
   * finish the requests they have, then unload; their next request loads them on what serves them now.
   */
  async reloadEngines(): Promise<EngineReload> {
    this.#assertOpen();
    return this.#serially(async () => {
      const before = this.#engines;
      const open = new Map(
        before.flatMap(({ record, supervisor, fingerprint }) =>
          supervisor && fingerprint !== null ? [[record.path, { id: record.id, fingerprint }] as const] : [],
        ),
      );
      const discovered = await discoverEngines({ ...this.#discovery, open });
      const kept = new Set<EngineEntry>();
      this.#engines = discovered.map((found) => {
        const same = found.kept ? before.find((entry) => entry.record.path === found.record.path) : undefined;
        if (same) kept.add(same);
        return same ?? this.#entry(found);
      });
      const retired = before.filter((entry) => entry.supervisor && !kept.has(entry));
      for (const entry of retired) void this.#retire(entry);
      const loadedIds = (entries: EngineEntry[]) => new Set(entries.filter((e) => e.supervisor).map((e) => e.record.id));
      const [was, is] = [loadedIds(before), loadedIds(this.#engines)];
      const reload: EngineReload = {
        added: [...is].filter((id) => !was.has(id)),
        replaced: retired.map((e) => e.record.id).filter((id) => is.has(id)),
        removed: [...was].filter((id) => !is.has(id)),
      };
      this.#logger?.info({ ...reload }, 'engines reloaded');
      return reload;
    });
  }

  /** Every plugin folder discovery looked at, in sorted order, with its outcome; a loaded one as it is now. */
  get engines(): readonly EngineRecord[] {
    return this.#engines.map(({ record, supervisor }) => {
      if (!supervisor || supervisor.status === 'loaded') return record;
      const failure = supervisor.failure && publicError(supervisor.failure, this.#folders);
      return { ...record, status: supervisor.status, error: failure };
    });
  }

  /** Loaded models, in load order. */
  models(): LoadedModel[] {
    return [...this.#models.values()].map(snapshot);
  }

  /**
   * Resolves `modelId` in the models folder, picks the engine for its format and architecture, admits it
   * against VRAM and loads it. Loading a loaded id returns it; concurrent loads of one id share one load, and
   * each caller's `onProgress` hears its progress.
   */
  async loadModel(modelId: string, options: LoadModelOptions = {}, onProgress?: LoadProgressListener): Promise<LoadedModel> {
    this.#assertOpen();
    const ref = parseModelRef(modelId);
    checkLoadOptions(options);
    const loaded = this.#models.get(modelId);
    if (loaded && !loaded.unloading) {
      checkSameLoad(modelId, loaded, options);
      return snapshot(loaded);
    }
    const pending = this.#loading.get(modelId);
    if (pending) {
      // One load per id: a second request with other settings waits for it and is refused if they clash.
      if (onProgress) pending.listeners.add(onProgress);
      const model = await pending.promise.finally(() => onProgress && pending.listeners.delete(onProgress));
      const state = this.#models.get(modelId);
      if (state) checkSameLoad(modelId, state, options);
      return model;
    }
    const listeners = new Set<LoadProgressListener>([this.#logProgress(modelId), ...(onProgress ? [onProgress] : [])]);
    const report = (progress: LoadProgress) => {
      for (const listener of listeners) listener(progress);
    };
    const loading = (async () => {
      await loaded?.unloading?.catch(() => undefined); // an unload in progress finishes first
      const candidate = await locateModel(this.#modelsDir, ref, options.format);
      const info = await this.#readModelInfo(candidate);
      const { record, supervisor } = this.#resolveEngine(info);
      const defaults = this.#loadDefaults(info);
      const params: ModelLoadParams = {
        path: candidate.path,
        format: candidate.format,
        contextLength: options.contextLength ?? defaults.contextLength,
        parallel: options.parallel ?? defaults.parallel,
        ...(candidate.quantization === null ? {} : { quantization: candidate.quantization }),
      };
      const embeds = record.manifest?.modalities?.includes('embedding') ?? false;
      return this.#serially(() => this.#admitAndLoad(modelId, supervisor, info, params, embeds, report));
    })();
    this.#loading.set(modelId, { promise: loading, options, listeners });
    try {
      return await loading;
    } finally {
      this.#loading.delete(modelId);
    }
  }

  /** Finds a model's file and reads its header now; the model info reader keeps the read for the load. */
  #readAhead(modelId: string): void {
    void (async () => this.#readModelInfo(await locateModel(this.#modelsDir, parseModelRef(modelId))))().catch(() => undefined);
  }

  /**
   * Every model in the models folder, loaded or not, and any loaded under an id the folder listing does not
   * give: what it is, the engine that would serve it (or why none can), its size and estimated VRAM.
   */
  async catalogue(): Promise<CatalogueEntry[]> {
    this.#assertOpen();
    const entries = await Promise.all((await listModels(this.#modelsDir)).map((found) => this.#describe(found)));
    const listed = new Set(entries.map((entry) => entry.id));
    for (const state of this.#models.values()) {
      if (!listed.has(state.id)) entries.push(await this.#describe({ id: state.id, candidate: null }));
    }
    return entries.sort((a, b) => a.id.localeCompare(b.id));
  }

  async #describe(found: FoundModel | { id: string; candidate: null }): Promise<CatalogueEntry> {
    const state = this.#models.get(found.id);
    const entry: CatalogueEntry = {
      id: found.id,
      state: state?.unloading ? 'unloading' : state ? 'loaded' : this.#loading.has(found.id) ? 'loading' : 'available',
      format: state?.model.format ?? null,
      quantization: state?.model.quantization ?? null,
      architecture: state?.model.architecture ?? null,
      sizeBytes: null,
      engineId: state?.engineId ?? null,
      estimatedVramBytes: null,
      error: null,
      loaded: state && !state.unloading ? snapshot(state) : null,
    };
    if ('error' in found) return { ...entry, state: 'unusable', error: toNodeError(found.error) };
    if (found.candidate === null) return entry;
    try {
      const info = await this.#readModelInfo(found.candidate);
      Object.assign(entry, {
        format: info.format,
        quantization: info.quantization,
        architecture: info.architecture,
        sizeBytes: await sizeOnDisk(found.candidate),
        estimatedVramBytes: estimateModelVram(info, this.#loadDefaults(info)).totalBytes,
      });
      entry.engineId ??= this.#resolveEngine(info).record.id;
    } catch (error) {
      if (entry.state === 'available') entry.state = 'unusable';
      entry.error = toNodeError(error);
    }
    return entry;
  }

  /** Context length and parallel sequences for a load of `info` that names none. */
  #loadDefaults(info: ModelInfo): { contextLength: number; parallel: number } {
    return {
      contextLength: this.#defaultContextLength ?? Math.min(info.trainedContextLength ?? DEFAULT_CONTEXT_LENGTH, DEFAULT_CONTEXT_LENGTH),
      parallel: this.#defaultParallel,
    };
  }

  /** Unloads a loaded model; 404 `model_not_loaded` if it is not, 409 `model_in_use` while leased. */
  async unloadModel(modelId: string): Promise<void> {
    this.#assertOpen();
    parseModelRef(modelId);
    await this.#loading.get(modelId)?.promise.catch(() => undefined);
    await this.#serially(async () => {
      const state = this.#models.get(modelId);
      if (!state) {
        throw new NodeError(`Model '${modelId}' is not loaded`, { type: 'not_found_error', code: 'model_not_loaded' });
      }
      if (state.activeRequests > 0) {
        throw new NodeError(`Model '${modelId}' is in use by ${state.activeRequests} request(s)`, {
          type: 'invalid_request_error',
          code: 'model_in_use',
          status: 409,
        });
      }
      await this.#unload(state);
    });
  }

  /**
   * Holds a model for one generation, loading it first if needed (with `options`, on first load only). A model
   * being unloaded is waited for and loaded again: a request never sees a model that exists as not found.
   */
  async acquireModel(modelId: string, options: LoadModelOptions = {}): Promise<ModelLease> {
    for (;;) {
      this.#assertOpen();
      const state = this.#models.get(modelId);
      if (state && !state.unloading) return lease(state, this.#toNodeError);
      // Unloading, or unloaded again by the monitor between the load and this turn: load once more.
      this.#waitingForLoad.set(modelId, (this.#waitingForLoad.get(modelId) ?? 0) + 1);
      try {
        await this.loadModel(modelId, options);
      } finally {
        const left = this.#waitingForLoad.get(modelId)! - 1;
        if (left === 0) this.#waitingForLoad.delete(modelId);
        else this.#waitingForLoad.set(modelId, left);
      }
    }
  }

  /**
   * What each loaded model is doing, and each model requests wait to load: as its engine reports it
   * (engine_model_get_stats), else as the node counts its generations against the model's `parallel`.
   */
  async modelActivity(): Promise<ModelActivity[]> {
    const loaded = await Promise.all(
      [...this.#models.values()].map(async (state): Promise<ModelActivity> => {
        const stats = await withinMs(
          state.engine.modelStats(state.id).catch(() => null),
          STATS_WAIT_MS,
        );
        const waitingForLoad = this.#waitingForLoad.get(state.id) ?? 0;
        const { parallel } = state.model;
        if (stats === null) {
          const running = Math.min(state.generating, parallel);
          return {
            id: state.id,
            running,
            waiting: state.generating - running + waitingForLoad,
            parallel,
            kvCells: null,
            kvCacheUsage: null,
          };
        }
        const kvCacheUsage = stats.kvCellsTotal > 0 ? stats.kvCellsUsed / stats.kvCellsTotal : null;
        return {
          id: state.id,
          running: stats.running,
          waiting: stats.waiting + waitingForLoad,
          parallel,
          kvCells: stats.kvCellsTotal > 0 ? stats.kvCellsTotal : null,
          kvCacheUsage,
        };
      }),
    );
    const loading = [...this.#waitingForLoad]
      .filter(([id]) => !this.#models.has(id))
      .map(([id, waiting]): ModelActivity => ({ id, running: 0, waiting, parallel: 0, kvCells: null, kvCacheUsage: null }));
    return [...loaded, ...loading];
  }

  /**
   * For the resource monitor: unloads the model used longest ago among those idle for at least `idleForMs`
   * (default 0), and returns it; null when none is.
   */
  async unloadIdleLeastRecentlyUsed({ idleForMs = 0 }: { idleForMs?: number } = {}): Promise<LoadedModel | null> {
    if (this.#closing) return null;
    return this.#serially(async () => {
      const since = Date.now() - idleForMs;
      const idle = [...this.#models.values()].filter((s) => s.activeRequests === 0 && !s.unloading && s.lastUsedAt <= since);
      const oldest = idle.sort((a, b) => a.lastUsedAt - b.lastUsedAt)[0];
      if (!oldest) return null;
      await this.#unload(oldest);
      return snapshot(oldest);
    });
  }

  async vramStatus(): Promise<VramStatus> {
    const devices = await this.#sampler.sample();
    const device = devices.find((d) => d.index === this.deviceIndex);
    const heldBytes = this.#heldBytes();
    const usedBytes = device?.usedBytes ?? null;
    const freeBytes = device?.freeBytes ?? null;
    const availableBytes = Math.max(0, Math.min(this.#limitBytes - heldBytes, freeBytes ?? Infinity));
    return {
      backend: this.backend,
      deviceIndex: this.deviceIndex,
      limitBytes: this.#limitBytes,
      heldBytes,
      usedBytes,
      freeBytes,
      availableBytes,
      devices,
    };
  }

  /** Waits for loads in progress, unloads idle models, then shuts down and closes every engine. Idempotent. */
  close(): Promise<void> {
    this.#closing ??= this.#serially(async () => {
      for (const state of [...this.#models.values()].filter((s) => s.activeRequests === 0)) {
        await this.#unload(state).catch((error) => this.#logger?.warn({ model: state.id, error: String(error) }, 'unload failed at close'));
      }
      this.#models.clear();
      // Those a reload took out of service too: their last requests had the server's grace to finish.
      for (const { record, supervisor } of [...this.#engines, ...this.#retiring]) {
        // close() cancels what is still generating and shuts the engine down, which frees its models.
        if (!supervisor) continue;
        await supervisor.close().then(
          () => this.#logger?.info({ engine: record.id }, 'engine shut down'),
          (error) => this.#logger?.warn({ engine: record.id, error: String(error) }, 'engine close failed'),
        );
      }
    });
    return this.#closing;
  }

  /** Engines in host processes of their own, their output logged as theirs. */
  #engineHostOpener(options: RegistryOptions): OpenEngine {
    const allowed = new Set(options.allowNetwork ?? []);
    return async (path, { expectedId }) => {
      const starting = EngineHost.start(path, {
        expectedId,
        allowNetwork: allowed.has(expectedId),
        ...(options.engineTimeouts === undefined ? {} : { timeouts: options.engineTimeouts }),
        onOutput: engineOutputLogger(expectedId, this.#logger),
        onNetworkDenied: (family) =>
          this.#logger?.warn({ engine: expectedId, addressFamily: family }, 'the plugin tried to open a network socket and was denied'),
      });
      // The host process has been started: while it boots, this thread loads what finding a model file needs
      // (a failure shows again where it is needed).
      fileNameParsers().catch(() => undefined);
      const host = await starting;
      if (!host.network.enforced && !allowed.has(expectedId)) {
        this.#logger?.warn({ engine: expectedId, reason: host.network.how }, 'the network cannot be denied to this plugin here');
      }
      return host;
    };
  }

  #entry({ record, engine, start, fingerprint }: DiscoveredEngine): EngineEntry {
    const supervisor = engine && start ? this.#supervise(record, engine, start) : null;
    return { record: { ...record, error: record.error && publicError(record.error, this.#folders) }, supervisor, fingerprint };
  }

  /** A plugin taken out of service: its models finish their requests and unload with it. */
  async #retire(entry: EngineEntry): Promise<void> {
    const { record, supervisor } = entry;
    this.#retiring.add(entry);
    const models = [...this.#models.values()].filter((state) => state.engine === supervisor!.current);
    const drained = (async () => {
      while (models.some((state) => state.activeRequests > 0 || state.generating > 0)) await sleep(RETIRE_POLL_MS);
      await supervisor!.close(); // frees every model it holds
    })();
    for (const state of models) {
      state.unloading = drained.finally(() => {
        if (this.#models.get(state.id) === state) this.#models.delete(state.id);
      });
    }
    await drained.then(
      () => this.#logger?.info({ engine: record.id, path: record.path, models: models.map((m) => m.id) }, 'engine closed after a reload'),
      (error) => this.#logger?.warn({ engine: record.id, error: String(error) }, 'engine close failed after a reload'),
    );
    this.#retiring.delete(entry);
  }

  #supervise(record: EngineRecord, engine: Engine, start: () => Promise<Engine>): EngineSupervisor {
    return new EngineSupervisor(
      engine,
      start,
      {
        onLost: (exit, lost) => this.#engineLost(record.id, exit, lost),
        onRestart: (outcome) => {
          if (outcome.status === 'restarting') this.#logger?.warn({ engine: record.id, delayMs: outcome.delayMs }, 'restarting the engine');
          else if (outcome.status === 'loaded') this.#logger?.info({ engine: record.id }, 'engine restarted');
          else this.#logger?.error({ engine: record.id, error: outcome.error.message }, 'engine failed; not restarting it');
        },
      },
      this.#restartPolicy,
    );
  }

  /** An engine's host died: its models are gone (their memory with them) and load again on their next request. */
  #engineLost(engineId: string, exit: EngineExit, engine: Engine): void {
    const lost = [...this.#models.values()].filter((state) => state.engine === engine);
    for (const state of lost) this.#models.delete(state.id);
    this.#logger?.error(
      { engine: engineId, exitCode: exit.exitCode, signal: exit.signal, models: lost.map((state) => state.id), reason: exit.code },
      `engine ${engineId} stopped: ${exit.message}`,
    );
  }

  #resolveEngine(info: ModelInfo): { record: EngineRecord; supervisor: EngineSupervisor } {
    const loaded = this.#engines.filter(
      (d): d is EngineEntry & { record: { manifest: NonNullable<EngineRecord['manifest']> }; supervisor: EngineSupervisor } =>
        d.supervisor !== null && d.record.manifest !== null,
    );
    if (loaded.length === 0) {
      throw new NodeError('No engine plugin is loaded; see the engines list for why each was skipped or rejected', {
        type: 'unsupported_error',
        code: 'no_engine',
        status: 503,
      });
    }
    const ofFormat = loaded.filter((d) => d.record.manifest.formats.includes(info.format));
    if (ofFormat.length === 0) {
      throw new NodeError(`Format '${info.format}' not supported by ${pluginNames(loaded)}`, {
        type: 'unsupported_error',
        code: 'format_mismatch',
      });
    }
    const match = ofFormat.find((d) => d.record.manifest.architectures.includes(info.architecture));
    if (!match) {
      throw new NodeError(`Architecture '${info.architecture}' not supported by ${pluginNames(ofFormat)}`, {
        type: 'unsupported_error',
        code: 'architecture_mismatch',
      });
    }
    return match;
  }

  /** A log line per phase, and per quarter of it: a long load is seen to move without flooding the log. */
  #logProgress(modelId: string): LoadProgressListener {
    let logged = { phase: '', quarter: -1 };
    return ({ phase, fraction }) => {
      const quarter = Math.floor(fraction * 4);
      if (phase === logged.phase && quarter <= logged.quarter) return;
      logged = { phase, quarter };
      this.#logger?.info({ model: modelId, phase, percent: Math.round(fraction * 100) }, 'loading');
    };
  }

  async #admitAndLoad(
    modelId: string,
    supervisor: EngineSupervisor,
    info: ModelInfo,
    params: ModelLoadParams,
    /** Whether the engine's manifest lists the `embedding` modality: the engine's say-so is needed too. */
    embeds: boolean,
    onProgress: LoadProgressListener,
  ): Promise<LoadedModel> {
    this.#assertOpen();
    const already = this.#models.get(modelId);
    if (already) return snapshot(already);
    const engine = await supervisor.engine();
    const engineId = engine.info.id;
    const estimated = await engine.estimateVram(params).catch((error) => {
      throw this.#toNodeError(error);
    });
    const required = estimated ?? estimateModelVram(info, { contextLength: params.contextLength!, parallel: params.parallel! }).totalBytes;
    const { availableBytes } = await this.vramStatus();
    if (required > availableBytes) {
      throw new NodeError(`Insufficient VRAM: required ${formatSize(required)}, available ${formatSize(availableBytes)}`, {
        type: 'resource_error',
        code: 'oom_vram',
      });
    }
    const budget = Number.isFinite(availableBytes) ? { vramBudgetBytes: availableBytes } : {};
    onProgress({ phase: LOAD_STARTING, fraction: 0 });
    const loaded = await engine.loadModel(modelId, { ...params, ...budget }, onProgress).catch((error) => {
      throw this.#toNodeError(error);
    });
    const now = Date.now();
    const state: ModelState = {
      id: modelId,
      engine,
      engineId,
      requested: { contextLength: params.contextLength!, parallel: params.parallel! },
      unloading: null,
      model: {
        id: modelId,
        engineId,
        format: params.format,
        architecture: info.architecture,
        path: params.path,
        quantization: params.quantization ?? null,
        contextLength: loaded.contextLength,
        parallel: params.parallel!,
        vramBytes: loaded.vramBytes > 0 ? loaded.vramBytes : required,
        embeddingLength: embeds ? loaded.embeddingLength : 0,
        loadedAt: now,
        info,
      },
      lastUsedAt: now,
      activeRequests: 0,
      generating: 0,
    };
    this.#models.set(modelId, state);
    this.#logger?.info({ model: modelId, engine: engineId, bytes: state.model.vramBytes, requiredBytes: required }, 'model loaded');
    return snapshot(state);
  }

  /** Unloads a model; while it does, requests for it wait (acquireModel) and then load it again. */
  #unload(state: ModelState): Promise<void> {
    state.unloading ??= (async () => {
      try {
        await state.engine.unloadModel(state.id);
      } catch (error) {
        state.unloading = null;
        throw this.#toNodeError(error);
      }
      if (this.#models.get(state.id) === state) this.#models.delete(state.id);
      this.#logger?.info({ model: state.id, engine: state.engineId, bytes: state.model.vramBytes }, 'model unloaded');
    })();
    return state.unloading;
  }

  /** An engine's error as a client may read it (publicError). */
  readonly #toNodeError = (error: unknown): NodeError => publicError(toNodeError(error), this.#folders);

  #heldBytes(): number {
    let held = 0;
    for (const state of this.#models.values()) held += state.model.vramBytes;
    return held;
  }

  #serially<T>(task: () => Promise<T>): Promise<T> {
    const result = this.#queueTail.then(task);
    this.#queueTail = result.catch(() => undefined);
    return result;
  }

  #assertOpen(): void {
    if (this.#closing) {
      throw new NodeError('The node is shutting down', { type: 'server_error', code: 'shutting_down', status: 503 });
    }
  }
}
/** `promise`'s value, or null when it takes longer than `ms`. */
function withinMs<T>(promise: Promise<T | null>, ms: number): Promise<T | null> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<null>((resolve) => (timer = setTimeout(() => resolve(null), ms)));
  return Promise.race([promise, late]).finally(() => clearTimeout(timer));
}

function pluginNames(engines: { record: EngineRecord }[]): string {
  const names = engines.map((d) => `'${d.record.id}'`);
  return names.length === 1 ? `plugin ${names[0]}` : `plugins ${names.join(', ')}`;
}
