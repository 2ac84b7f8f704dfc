import type { Stats } from 'node:fs';
import { readdir, realpath, stat } from 'node:fs/promises';
import { basename, isAbsolute, join, relative, resolve, sep } from 'node:path';
import { ENGINE_ABI_VERSION } from '@llm-node/abi-native';
import type { Engine, EngineCapability, EngineInitConfig } from '@llm-node/abi-native';
import { GPU_BACKENDS } from '@llm-node/gpu-detect';
import type { GpuBackend } from '@llm-node/gpu-detect';
import { readManifest } from '@llm-node/manifest';
import type { EngineManifest } from '@llm-node/manifest';
import { NodeError, toNodeError } from './errors.js';

/**
 * What became of one plugin folder: loaded, skipped (built for another backend) or rejected by discovery; a
 * loaded engine whose host died is `restarting` until it runs again, or `failed` once it is given up.
 */
export type EngineStatus = 'loaded' | 'skipped' | 'rejected' | 'restarting' | 'failed';

/** One folder under the engines dir and its outcome; every folder discovery looked at gets one. */
export interface EngineRecord {
  /** The manifest's id; the engine folder's name when there is no valid manifest. */
  id: string;
  status: EngineStatus;
  /** Absolute path of the plugin folder (<enginesDir>/<engine>/<backend>), or of the engine folder itself. */
  path: string;
  /** Null when the manifest could not be read or was invalid. */
  manifest: EngineManifest | null;
  /** The optional entry points the binary provides; empty unless loaded. */
  capabilities: readonly EngineCapability[];
  /** The manifest's warnings (unknown fields) and layout notes (a folder named unlike the id). */
  warnings: readonly string[];
  /** Why the plugin was skipped or rejected; null when loaded. */
  error: NodeError | null;
}

/** Opens a plugin library; the registry's own starts an engine host process (abi-native's EngineHost). Rejects with EngineError. */
export type OpenEngine = (libraryPath: string, options: { expectedId: string }) => Promise<Engine>;

export interface DiscoverOptions {
  /** Engine folders, searched in order: a plugin whose id an earlier folder's plugin took is refused. */
  enginesDirs: readonly string[];
  backend: GpuBackend;
  openEngine: OpenEngine;
  /** engine_init's configuration, less the plugin folder that discovery adds. */
  init: Omit<EngineInitConfig, 'pluginDir' | 'gpuBackend'>;
  /**
   * Plugins open already (a discovery run again): a folder whose id and files are as they were is kept
   * (`kept`, no engine opened); one rebuilt since (other files, sizes or times) is opened anew.
   */
  open?: ReadonlyMap<string, { id: string; fingerprint: string }>;
}

/** A loaded record comes with its opened and initialised engine, and how to start another like it. */
export interface DiscoveredEngine {
  record: EngineRecord;
  engine: Engine | null;
  /** Opens and initialises the plugin again, as discovery did; null unless loaded. */
  start: (() => Promise<Engine>) | null;
  /** The plugin folder's files as they were opened (names, sizes, times); null unless loaded or kept. */
  fingerprint: string | null;
  /** Loaded, and the same as in `open`: the engine opened before serves on. */
  kept: boolean;
}

const HOST_ABI = String(ENGINE_ABI_VERSION);

/** A plugin whose folder, manifest and binary passed; opening it decides the rest. */
interface Candidate {
  engineName: string;
  pluginDir: string;
  manifest: EngineManifest;
  warnings: string[];
  fingerprint: string;
}

/** Filesystem checks run this many folders at a time: fast, and far from any open-file limit. */
const INSPECT_CONCURRENCY = 16;
/** Plugins open this many at a time, each starting an engine host process and its libraries. */
const OPEN_CONCURRENCY = 4;

/**
 * Scans <enginesDir>/<engine>/<backend>/manifest.json in each engines dir in turn, each in sorted order, and
 * opens and initialises every plugin built for the active backend. Folders that are neither a backend's name
 * nor hold a manifest.json (an engine's sources, build trees) are not plugins and are passed over. A missing or
 * unreadable engines dir throws; anything wrong below it becomes that folder's record.
 */
export async function discoverEngines(options: DiscoverOptions): Promise<DiscoveredEngine[]> {
  const inspected: (DiscoveredEngine | Candidate)[] = [];
  for (const dir of options.enginesDirs) {
    const enginesDir = resolve(dir);
    const names = await listEnginesDir(enginesDir);
    // Folder, manifest and binary checks only read the filesystem, so they overlap.
    inspected.push(
      ...(await mapConcurrently(names, INSPECT_CONCURRENCY, (name) => inspectEngineFolder(options, join(enginesDir, name)))).flat(),
    );
  }
  // Each plugin opens in an engine host of its own, so several open at once: a start waits for the slowest, not
  // for all of them in turn. Who keeps a contested id is then decided in order, as if they had opened one by one.
  const opened = await mapConcurrently(inspected, OPEN_CONCURRENCY, async (item) =>
    'record' in item ? item : { candidate: item, result: await openCandidate(options, item) },
  );
  const taken = new Map<string, string>();
  const found: DiscoveredEngine[] = [];
  for (const item of opened) {
    if ('record' in item) {
      found.push(item);
      continue;
    }
    const { candidate, result } = item;
    const { manifest, pluginDir, warnings } = candidate;
    const holder = taken.get(manifest.id);
    if (holder === undefined) {
      if (result.record.status === 'loaded') taken.set(manifest.id, pluginDir);
      found.push(result);
      continue;
    }
    await result.engine?.close().catch(() => undefined);
    const conflict = pluginError('id_conflict', `Engine id '${manifest.id}' at ${pluginDir} is already taken by ${holder}`);
    found.push(outcome(manifest.id, pluginDir, manifest, 'rejected', conflict, warnings));
  }
  return found;
}

async function inspectEngineFolder(options: DiscoverOptions, engineDir: string): Promise<(DiscoveredEngine | Candidate)[]> {
  const name = basename(engineDir);
  const folder = await readFolder(engineDir);
  if ('error' in folder) return [outcome(name, engineDir, null, 'rejected', folder.error)];
  const pluginNames = await pluginFolderNames(engineDir, folder.entries);
  if (pluginNames.length === 0) {
    return [
      outcome(
        name,
        engineDir,
        null,
        'rejected',
        pluginError(
          'no_plugin',
          `No plugin in ${engineDir}: expected a folder named for a GPU backend (${GPU_BACKENDS.join(', ')}) holding manifest.json`,
        ),
      ),
    ];
  }
  return Promise.all(pluginNames.map((backendName) => inspectPlugin(options, name, backendName, join(engineDir, backendName))));
}

async function listEnginesDir(enginesDir: string): Promise<string[]> {
  const info = await stat(enginesDir).catch((error: NodeJS.ErrnoException) => {
    const missing = error.code === 'ENOENT';
    throw pluginError(
      missing ? 'engines_dir_not_found' : 'engines_dir_unreadable',
      missing ? `Engines directory ${enginesDir} does not exist` : `Engines directory ${enginesDir} cannot be read: ${error.code}`,
    );
  });
  if (!info.isDirectory()) {
    throw pluginError('engines_dir_not_a_directory', `Engines directory ${enginesDir} is not a directory`);
  }
  const folder = await readFolder(enginesDir);
  if ('error' in folder) throw pluginError('engines_dir_unreadable', folder.error.message);
  return folder.entries;
}

/** A folder's visible entries, sorted; or why it is not a readable folder (a file, a symlink loop, …). */
async function readFolder(path: string): Promise<{ entries: string[] } | { error: NodeError }> {
  try {
    const info = await stat(path);
    if (!info.isDirectory()) {
      return {
        error: pluginError('not_a_directory', `${path} is a file, not a folder; plugins live in <engines>/<engine_id>/<gpu_backend>/`),
      };
    }
    const entries = await readdir(path);
    return { entries: entries.filter((entry) => !entry.startsWith('.')).sort() };
  } catch (error) {
    return { error: pluginError('unreadable', `${path} cannot be read: ${describeFsError(error)}`) };
  }
}

async function pluginFolderNames(engineDir: string, entries: string[]): Promise<string[]> {
  const names: string[] = [];
  for (const entry of entries) {
    const isBackendName = (GPU_BACKENDS as readonly string[]).includes(entry);
    if (isBackendName || (await stat(join(engineDir, entry, 'manifest.json')).catch(() => null))) names.push(entry);
  }
  return names;
}

async function inspectPlugin(
  options: DiscoverOptions,
  engineName: string,
  backendName: string,
  pluginDir: string,
): Promise<DiscoveredEngine | Candidate> {
  const folder = await readFolder(pluginDir);
  if ('error' in folder) return outcome(engineName, pluginDir, null, 'rejected', folder.error);

  const read = await readManifest(join(pluginDir, 'manifest.json'));
  const warnings = [...read.warnings];
  if (!read.ok) {
    return outcome(engineName, pluginDir, null, 'rejected', pluginError('invalid_manifest', read.errors.join('; ')), warnings);
  }
  const manifest = read.manifest;
  const refuse = (status: EngineStatus, error: NodeError) => outcome(manifest.id, pluginDir, manifest, status, error, warnings);

  if (manifest.gpu_backend !== backendName) {
    return refuse(
      'rejected',
      pluginError(
        'backend_folder_mismatch',
        `${pluginDir} holds a plugin for gpu_backend '${manifest.gpu_backend}' in a folder named '${backendName}'; ` +
          `move it to ${engineName}/${manifest.gpu_backend}/`,
      ),
    );
  }
  if (manifest.gpu_backend !== options.backend) {
    return refuse(
      'skipped',
      new NodeError(`Built for ${manifest.gpu_backend}; the active backend is ${options.backend}`, {
        type: 'unsupported_error',
        code: 'backend_not_active',
      }),
    );
  }
  if (manifest.id !== engineName) {
    warnings.push(`Engine folder '${engineName}' holds engine '${manifest.id}'; name the folder after the id`);
  }
  if (manifest.abi_version !== HOST_ABI) {
    return refuse('rejected', pluginError('abi_mismatch', `ABI version mismatch: expected ${HOST_ABI}, got ${manifest.abi_version}`));
  }
  const binaryProblem = await checkBinary(pluginDir, manifest.binary);
  if (binaryProblem) return refuse('rejected', binaryProblem);
  return { engineName, pluginDir, manifest, warnings, fingerprint: await folderFingerprint(pluginDir) };
}

/** What tells a rebuilt plugin folder from the one opened before: each file's name, size and modification time. */
async function folderFingerprint(pluginDir: string): Promise<string> {
  const entries = await readdir(pluginDir, { withFileTypes: true, recursive: true });
  const files = await Promise.all(
    entries
      .filter((entry) => entry.isFile())
      .map(async (entry) => {
        const path = join(entry.parentPath, entry.name);
        const info = await stat(path).catch(() => null);
        return `${relative(pluginDir, path)}:${info?.size}:${info?.mtimeMs}`;
      }),
  );
  return files.sort().join('\n');
}

/** Opens and initialises a candidate, or keeps the engine opened before when its folder is as it was. */
async function openCandidate(options: DiscoverOptions, candidate: Candidate): Promise<DiscoveredEngine> {
  const { pluginDir, manifest, warnings } = candidate;
  const refuse = (error: NodeError) => outcome(manifest.id, pluginDir, manifest, 'rejected', error, warnings);
  const before = options.open?.get(pluginDir);
  if (before?.id === manifest.id && before.fingerprint === candidate.fingerprint) {
    const kept = outcome(manifest.id, pluginDir, manifest, 'loaded', null, warnings);
    return { ...kept, fingerprint: candidate.fingerprint, kept: true };
  }
  const open = () => options.openEngine(join(pluginDir, manifest.binary), { expectedId: manifest.id });
  const init = async (engine: Engine) => {
    try {
      await engine.init({ ...options.init, gpuBackend: options.backend, pluginDir });
    } catch (error) {
      await engine.close().catch(() => undefined);
      throw pluginError('init_failed', `Engine '${manifest.id}' failed to initialise: ${toNodeError(error).message}`);
    }
    return engine;
  };
  let engine: Engine;
  try {
    engine = await open();
  } catch (error) {
    return refuse(toNodeError(error));
  }
  try {
    await init(engine);
  } catch (error) {
    return refuse(error as NodeError);
  }
  const loaded = outcome(manifest.id, pluginDir, manifest, 'loaded', null, warnings);
  return {
    record: { ...loaded.record, capabilities: engine.capabilities },
    engine,
    start: async () => init(await open()),
    fingerprint: candidate.fingerprint,
    kept: false,
  };
}

/** The manifest already refuses separators and '..'; here the file itself must exist inside the folder. */
async function checkBinary(pluginDir: string, binary: string): Promise<NodeError | null> {
  const path = join(pluginDir, binary);
  let info: Stats;
  try {
    info = await stat(path);
  } catch (error) {
    return pluginError('binary_not_found', `Binary '${binary}' not found in ${pluginDir} (${describeFsError(error)})`);
  }
  if (!info.isFile()) return pluginError('binary_not_a_file', `Binary '${binary}' in ${pluginDir} is not a regular file`);
  // A symlink may point elsewhere; the plugin folder must hold the library itself (it is self-contained).
  const [realDir, realBinary] = await Promise.all([realpath(pluginDir), realpath(path)]);
  const inside = relative(realDir, realBinary);
  if (inside === '..' || inside.startsWith(`..${sep}`) || isAbsolute(inside)) {
    return pluginError('binary_outside_folder', `Binary '${binary}' in ${pluginDir} resolves to ${realBinary}, outside the plugin folder`);
  }
  return null;
}

function outcome(
  id: string,
  path: string,
  manifest: EngineManifest | null,
  status: EngineStatus,
  error: NodeError | null,
  warnings: string[] = [],
): DiscoveredEngine {
  return {
    record: { id, status, path, manifest, capabilities: [], warnings, error },
    engine: null,
    start: null,
    fingerprint: null,
    kept: false,
  };
}

function pluginError(code: string, message: string): NodeError {
  return new NodeError(message, { type: 'plugin_error', code });
}

function describeFsError(error: unknown): string {
  const code = (error as NodeJS.ErrnoException).code;
  if (code === 'ELOOP') return 'ELOOP (a symbolic link loop)';
  if (code === 'ENOENT') return 'ENOENT (missing, or a dangling symbolic link)';
  return code ?? (error as Error).message;
}

/** fn over items with at most `limit` in flight; results in the items' order. */
async function mapConcurrently<T, R>(items: readonly T[], limit: number, fn: (item: T) => Promise<R>): Promise<R[]> {
  const results: R[] = new Array(items.length);
  let next = 0;
  const worker = async () => {
    while (next < items.length) {
      const index = next++;
      results[index] = await fn(items[index]!);
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
  return results;
}
