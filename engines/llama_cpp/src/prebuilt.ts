// Which prebuilt llama.cpp runtime fills which plugin folder, and which of its files go there. Pure functions
// over a package's file list, so that the choice for every platform is tested on the recorded lists of the
// real packages (src/prebuilt-files/), whatever machine runs the tests.
import { copyFile } from 'node:fs/promises';
import { join, posix } from 'node:path';

/** The plugin folders (gpu backends) a platform builds, each from one of node-llama-cpp's prebuilt packages. */
export const PLATFORM_RUNTIMES: Readonly<Record<string, readonly { backend: string; packageName: string }[]>> = {
  'linux-x64': [
    { backend: 'cpu', packageName: '@node-llama-cpp/linux-x64' },
    { backend: 'cuda', packageName: '@node-llama-cpp/linux-x64-cuda' },
  ],
  'darwin-arm64': [{ backend: 'metal', packageName: '@node-llama-cpp/mac-arm64-metal' }],
  'win32-x64': [
    { backend: 'cpu', packageName: '@node-llama-cpp/win-x64' },
    { backend: 'cuda', packageName: '@node-llama-cpp/win-x64-cuda' },
  ],
};

/** One plugin folder's llama.cpp runtime, chosen from a prebuilt package. */
export interface RuntimeSelection {
  backend: string;
  packageName: string;
  /** The package's folder holding the libraries, relative to the package root (bins/<name>). */
  libraryDir: string;
  /** The libraries the plugin opens at engine_init, in order: llama, ggml, ggml-base (file names). */
  libraries: readonly [llama: string, ggml: string, ggmlBase: string];
  /** Every file copied beside the plugin: the three above and each ggml backend loaded at run time. */
  runtimeFiles: readonly string[];
}

// lib<stem>[.<tag>...].<ext>: libllama.v0.4.0.so, libllama.cuda.v0.4.0.so, llama.cuda.v0.4.0.dll,
// libggml-base.dylib, libggml-metal.so (macOS backends are .so), ggml-cpu-haswell.dll. The stem is llama, ggml or
// ggml-<name>; llama-common and node-llama-cpp's addon (llama-addon.node, .lib, .exp) are not part of the runtime.
const RUNTIME_LIBRARY = /^(?:lib)?(llama|ggml(?:-[a-z0-9_]+)*)((?:\.[a-z0-9]+)*)\.(?:so|dylib|dll)$/;

/**
 * Picks the runtime for `backend` from a prebuilt package's file list (paths relative to its root, as `npm
 * pack` lists them). Throws an Error naming the package and the missing or ambiguous library when the package
 * does not hold exactly one llama, ggml and ggml-base library.
 */
export function selectRuntime(backend: string, packageName: string, files: readonly string[]): RuntimeSelection {
  const libraryDir = `bins/${packageName.replace(/^@node-llama-cpp\//, '')}`;
  const byStem = new Map<string, string[]>();
  for (const file of files) {
    if (posix.dirname(file) !== libraryDir) continue;
    const name = posix.basename(file);
    const stem = RUNTIME_LIBRARY.exec(name)?.[1];
    if (stem === undefined) continue;
    byStem.set(stem, [...(byStem.get(stem) ?? []), name]);
  }
  const one = (stem: string): string => {
    const found = byStem.get(stem) ?? [];
    if (found.length !== 1) {
      const what = found.length === 0 ? 'none' : found.join(', ');
      throw new Error(
        `${packageName} does not hold exactly one ${stem} library in ${libraryDir}/ (found ${what}); reinstall it (pnpm install)`,
      );
    }
    return found[0]!;
  };
  const libraries = [one('llama'), one('ggml'), one('ggml-base')] as const;
  const runtimeFiles = [...byStem.values()].flat().sort();
  return { backend, packageName, libraryDir, libraries, runtimeFiles };
}

/**
 * Copies a selection's runtime files from the installed package at `packageDir` into the plugin folder
 * `pluginDir`, which must exist. Files of an earlier llama.cpp release in the folder are the caller's to clear.
 */
export async function copyRuntime(selection: RuntimeSelection, packageDir: string, pluginDir: string): Promise<void> {
  for (const file of selection.runtimeFiles) {
    await copyFile(join(packageDir, selection.libraryDir, file), join(pluginDir, file));
  }
}
