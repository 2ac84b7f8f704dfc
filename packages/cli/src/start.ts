import { existsSync, readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import type { AddressInfo } from 'node:net';
import { dirname, join, resolve } from 'node:path';
import { setTimeout } from 'node:timers/promises';
import type { Logger } from 'pino';
import { detectBackend, detectGpu, formatSize } from '@llm-node/gpu-detect';
import type { GpuBackend, GpuDetection } from '@llm-node/gpu-detect';
import { Registry } from '@llm-node/registry';
import type { EngineRecord } from '@llm-node/registry';
import type { CloseOptions } from '@llm-node/server';
import { loadAtStart } from './load-at-start.js';
import type { NodeOptions } from './options.js';
import type { StatusLine } from './status-line.js';

/** Start-up failed for a reason the operator must fix (no GPU, engines dir missing, port taken): exit 1. */
export class StartupError extends Error {}

export interface RunningNode {
  readonly address: AddressInfo;
  /** Where the agent check listens; null without --agent-port. */
  readonly agentAddress: AddressInfo | null;
  /**
   * Drains (new requests refused, those in flight finish within the grace), ends what is left, unloads models and
   * shuts every engine down. Called again with no grace, it ends the drain at once.
   */
  close(options?: CloseOptions): Promise<void>;
}

/**
 * Detects the GPU, discovers the plugins, and serves the API; logs each step's outcome. `statusLine`, on a
 * terminal, shows the progress of the loads --load asks for.
 */
export async function startNode(options: NodeOptions, logger: Logger, statusLine?: StatusLine): Promise<RunningNode> {
  // The server's modules take a few hundred milliseconds of this thread. Without --load they load while the GPU
  // is found and the engine hosts start; with it, once the first load has been handed to its engine (below):
  // before, they would hold up the steps on this thread that lead to it (the model's header, the VRAM estimate).
  const serverModule = options.load.length === 0 ? import('@llm-node/server') : null;
  const gpu = await findGpu(options);
  logGpu(gpu, options, logger);

  const registry = await openRegistry(options, gpu, logger);
  // The models named with --load start loading now, in their engine hosts, while the server's modules load and the
  // node starts listening: a node started to serve a model answers its first request sooner. The head start is
  // bounded: an engine slow to admit a model does not keep the node from listening.
  await Promise.race([
    loadAtStart(registry, options.load, logger, statusLine),
    setTimeout(FIRST_LOAD_HEAD_START_MS, undefined, { ref: false }),
  ]);

  const { createServer } = await (serverModule ?? import('@llm-node/server'));
  const server = createServer({
    registry,
    logger,
    monitorIntervalMs: options.monitorIntervalMs,
    allowedHosts: options.allowedHosts,
    ...(options.maxConnections === undefined ? {} : { maxConnections: options.maxConnections }),
    ...(options.apiKey === undefined ? {} : { apiKey: options.apiKey }),
    ...(options.agentPort === undefined ? {} : { agentPort: options.agentPort }),
  });
  let address: AddressInfo;
  try {
    address = await server.listen(options.port, options.host);
  } catch (error) {
    await registry.close();
    throw new StartupError(`Cannot listen on ${options.host}:${options.port}: ${(error as Error).message}`);
  }
  logger.info(`llm-node listening on http://${formatHost(address.address)}:${address.port}`);
  const { agentAddress } = server;
  if (agentAddress) logger.info(`HAProxy agent check on ${formatHost(agentAddress.address)}:${agentAddress.port}`);
  // After listening: reading every model's header takes a while with many models, and serving need not wait.
  void logModels(registry, options.modelsDir, logger).catch((error: Error) =>
    logger.warn(`Cannot list the models in ${options.modelsDir}: ${error.message}`),
  );

  let closing: Promise<void> | null = null;
  return {
    address,
    agentAddress,
    close(closeOptions) {
      const serverClosed = server.close(closeOptions);
      closing ??= serverClosed.then(() => registry.close());
      return closing;
    },
  };
}

/** Discovers and opens the engine plugins for the GPU found; logs what became of each. */
async function openRegistry(options: NodeOptions, gpu: GpuDetection, logger: Logger): Promise<Registry> {
  const enginesDirs = findEnginesDirs(options.enginesDir);
  logger.info(`Engines from: ${enginesDirs.length > 0 ? enginesDirs.join(', ') : 'nowhere (no ./engines, no engine package installed)'}`);
  const timeouts = {
    ...(options.engineStallTimeoutSeconds === undefined ? {} : { stallMs: options.engineStallTimeoutSeconds * 1000 }),
    ...(options.modelLoadTimeoutSeconds === undefined ? {} : { loadMs: options.modelLoadTimeoutSeconds * 1000 }),
  };
  let registry: Registry;
  try {
    registry = await Registry.create({
      enginesDirs,
      modelsDir: options.modelsDir,
      gpu,
      deviceIndex: options.gpuDevice,
      allowNetwork: options.allowNetwork,
      engineTimeouts: timeouts,
      logger,
      readAhead: options.load,
      ...(options.vramLimitBytes === undefined ? {} : { vramLimitBytes: options.vramLimitBytes }),
      ...(options.contextLength === undefined ? {} : { defaultContextLength: options.contextLength }),
      ...(options.parallel === undefined ? {} : { defaultParallel: options.parallel }),
    });
  } catch (error) {
    const code = (error as { code?: string }).code ?? '';
    throw new StartupError(
      code.startsWith('engines_dir') ? `Cannot use the engines dir: ${(error as Error).message}` : (error as Error).message,
    );
  }
  for (const record of registry.engines) logPlugin(record, logger);
  if (!registry.engines.some((e) => e.status === 'loaded')) {
    logger.warn(
      `No engine plugin loaded for ${gpu.backend}: models cannot be served until one is placed in ${options.enginesDir ?? DEFAULT_ENGINES_DIR}/<engine_id>/${gpu.backend}/`,
    );
  }

  return registry;
}

// About what admitting a large model takes on a slow machine (its header, its engine's estimate).
const FIRST_LOAD_HEAD_START_MS = 1000;

const BACKEND_NAMES: Record<GpuBackend, string> = { cuda: 'CUDA', metal: 'Metal', directml: 'DirectML', cpu: 'cpu' };

async function findGpu(options: NodeOptions): Promise<GpuDetection> {
  const result = options.gpuBackend ? await detectBackend(options.gpuBackend) : await detectGpu();
  if (result.found) return result.detection;
  const tried = result.tried.map((line) => `  - ${line}`).join('\n');
  if (options.gpuBackend) {
    throw new StartupError(`No ${BACKEND_NAMES[options.gpuBackend]} GPU found (--gpu-backend ${options.gpuBackend}). Tried:\n${tried}`);
  }
  throw new StartupError(
    `No GPU found. Tried:\n${tried}\n` +
      'llm-node needs a GPU (CUDA, Metal or DirectML) and never falls back to the CPU on its own.\n' +
      'Check the GPU driver (nvidia-smi, system_profiler SPDisplaysDataType, dxdiag), name the backend with\n' +
      '--gpu-backend <cuda|metal|directml>, or for development on a machine without one: --gpu-backend cpu',
  );
}

function logGpu(gpu: GpuDetection, options: NodeOptions, logger: Logger): void {
  if (gpu.backend === 'cpu') {
    logger.warn('Running on the cpu backend (named with --gpu-backend cpu): for development and CI, not for serving');
  }
  for (const device of gpu.devices) {
    const free = device.freeBytes === null ? 'free unknown' : `${formatSize(device.freeBytes)} free`;
    const memory = gpu.backend === 'cpu' ? 'RAM' : device.unifiedMemory ? 'unified memory' : 'VRAM';
    logger.info(
      `GPU ${device.index} (${gpu.backend} via ${gpu.source}): ${device.name}, ${formatSize(device.totalBytes)} ${memory}, ${free}`,
    );
  }
  const limit = options.vramLimitBytes === undefined ? 'all device memory' : formatSize(options.vramLimitBytes);
  logger.info(`VRAM limit: ${limit}`);
  const device = gpu.devices.find((d) => d.index === options.gpuDevice);
  if (device && options.vramLimitBytes !== undefined && options.vramLimitBytes > device.totalBytes) {
    logger.warn(
      `--vram-limit ${formatSize(options.vramLimitBytes)} is more than GPU ${device.index} has (${formatSize(device.totalBytes)}): models are admitted up to the limit, so the device runs out of memory first`,
    );
  }
  if (!existsSync(options.modelsDir)) {
    logger.warn(`The models dir ${options.modelsDir} does not exist: every load answers model_not_found until it does`);
  }
}

/** What the models folder holds: one line per model, so an operator sees what clients can name. */
async function logModels(registry: Registry, modelsDir: string, logger: Logger): Promise<void> {
  const models = await registry.catalogue();
  if (models.length === 0) logger.info(`No models in ${modelsDir}: put <model_id>.gguf files or <model_id>/ folders there`);
  for (const model of models) {
    const what = [model.format, model.architecture, model.quantization].filter(Boolean).join(' ');
    const size = model.sizeBytes === null ? '' : `, ${formatSize(model.sizeBytes)} on disk`;
    if (model.error) logger.warn(`model ${model.id} (${what}${size}): cannot be served: ${model.error.message}`);
    else logger.info(`model ${model.id} (${what}${size}): ${model.engineId}, about ${formatSize(model.estimatedVramBytes ?? 0)} VRAM`);
  }
}

function logPlugin(record: EngineRecord, logger: Logger): void {
  const name = record.manifest ? `${record.id} ${record.manifest.version}` : record.id;
  const where = record.path;
  for (const warning of record.warnings) logger.warn(`plugin ${name} (${where}): ${warning}`);
  if (record.status === 'loaded') {
    const capabilities = record.capabilities.length > 0 ? ` [${record.capabilities.join(', ')}]` : '';
    logger.info(`plugin ${name} (${where}): loaded${capabilities}`);
  } else if (record.status === 'skipped') {
    logger.info(`plugin ${name} (${where}): skipped: ${record.error?.message}`);
  } else {
    logger.warn(`plugin ${name} (${where}): rejected: ${record.error?.message} (${record.error?.code})`);
  }
}

const DEFAULT_ENGINES_DIR = './engines';

/**
 * Where plugins are looked for, in order: the engines dir the operator named (it must exist), else ./engines
 * when there is one; then the engines folder of every engine package installed with this one. An engine
 * package is one of this package's optional dependencies (its platform's builds of an engine, as npm installs
 * them) whose package.json names its folder in `"llm-node": { "engines": "<folder>" }`.
 */
function findEnginesDirs(named: string | undefined): string[] {
  const dirs = named !== undefined ? [named] : existsSync(DEFAULT_ENGINES_DIR) ? [DEFAULT_ENGINES_DIR] : [];
  const require = createRequire(import.meta.url);
  const own = require('../package.json') as { optionalDependencies?: Record<string, string> };
  for (const name of Object.keys(own.optionalDependencies ?? {})) {
    let manifestPath: string;
    try {
      manifestPath = require.resolve(`${name}/package.json`);
    } catch {
      continue; // not installed: built for another platform
    }
    const folder = (JSON.parse(readFileSync(manifestPath, 'utf8')) as { 'llm-node'?: { engines?: unknown } })['llm-node']?.engines;
    const dir = typeof folder === 'string' ? join(dirname(manifestPath), folder) : null;
    if (dir !== null && existsSync(dir)) dirs.push(dir);
  }
  return dirs.map((dir) => resolve(dir));
}

function formatHost(host: string): string {
  return host.includes(':') ? `[${host}]` : host;
}
