import { copyFile, mkdir, rename, writeFile } from 'node:fs/promises';
import { basename, join } from 'node:path';
import { openEngine } from '../engine.js';

export interface InstallTestPluginOptions {
  /** The engines folder: the plugin lands in <enginesDir>/<id>/<backend>/. */
  enginesDir: string;
  /** The library, as buildTestPlugin returned it. */
  plugin: string;
  /** Folder name and manifest id. Default: the id the library reports (its file name when it cannot be opened). */
  id?: string;
  /** Default 'cpu'. */
  backend?: string;
  /** Fields that replace the default manifest's; a field set to undefined is left out. */
  manifest?: Record<string, unknown>;
}

/**
 * Lays out a plugin as the node finds it: <enginesDir>/<id>/<backend>/{manifest.json, the library}, with a
 * manifest that describes the library truthfully unless `manifest` says otherwise. Returns the folder. An
 * installed library is replaced by a new file, as build tools do: writing into the one an engine host has
 * mapped would crash it.
 */
export async function installTestPlugin(options: InstallTestPluginOptions): Promise<string> {
  const reported = reportedInfo(options.plugin);
  const id =
    options.id ??
    reported?.id ??
    basename(options.plugin)
      .replace(/^lib/, '')
      .replace(/\.[^.]+$/, '');
  const backend = options.backend ?? 'cpu';
  const dir = join(options.enginesDir, id, backend);
  const manifest = {
    id,
    version: reported?.version ?? '1.0.0',
    abi_version: '1',
    gpu_backend: backend,
    architectures: ['llama'],
    formats: ['gguf'],
    binary: basename(options.plugin),
    ...options.manifest,
  };
  await mkdir(dir, { recursive: true });
  const library = join(dir, basename(options.plugin));
  await copyFile(options.plugin, `${library}.new`);
  await rename(`${library}.new`, library);
  await writeFile(join(dir, 'manifest.json'), `${JSON.stringify(manifest, null, 2)}\n`);
  return dir;
}

/** The id and version engine_get_info() reports, or undefined when the library is refused. */
function reportedInfo(library: string): { id: string; version: string } | undefined {
  try {
    const engine = openEngine(library);
    void engine.close();
    return engine.info;
  } catch {
    return undefined;
  }
}
