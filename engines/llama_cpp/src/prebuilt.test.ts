import { mkdir, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';

import { copyRuntime, PLATFORM_RUNTIMES, selectRuntime } from './prebuilt.js';

// The file lists of the real packages, recorded with `npm pack @node-llama-cpp/<name>@<version> --dry-run --json`.
async function recorded(name: string): Promise<{ package: string; version: string; files: string[] }> {
  return JSON.parse(await readFile(new URL(`prebuilt-files/${name}.json`, import.meta.url), 'utf8'));
}

const scratch = await mkdtemp(join(tmpdir(), 'llama-cpp-prebuilt-'));
afterAll(() => rm(scratch, { recursive: true, force: true }));

/** The plugin folder's runtime as the build makes it, from an installed package laid out as the list says. */
async function pluginFolderFrom(name: string, backend: string): Promise<string[]> {
  const { package: packageName, files } = await recorded(name);
  const packageDir = join(scratch, name);
  for (const file of files) {
    await mkdir(dirname(join(packageDir, file)), { recursive: true });
    await writeFile(join(packageDir, file), file);
  }
  const pluginDir = join(scratch, `${name}-plugin`, backend);
  await mkdir(pluginDir, { recursive: true });
  await copyRuntime(selectRuntime(backend, packageName, files), packageDir, pluginDir);
  return (await readdir(pluginDir)).sort();
}

describe('the prebuilt llama.cpp runtime of each platform', () => {
  it('builds cpu and cuda on linux-x64, metal on darwin-arm64, cpu and cuda on win32-x64', () => {
    const backends = Object.fromEntries(
      Object.entries(PLATFORM_RUNTIMES).map(([platform, runtimes]) => [platform, runtimes.map((r) => r.backend)]),
    );
    expect(backends).toEqual({ 'linux-x64': ['cpu', 'cuda'], 'darwin-arm64': ['metal'], 'win32-x64': ['cpu', 'cuda'] });
  });

  it('fills metal/ from mac-arm64-metal with the versioned dylibs and the .so backends, not the addon', async () => {
    const { package: packageName, files } = await recorded('mac-arm64-metal');
    expect(selectRuntime('metal', packageName, files).libraries).toEqual([
      'libllama.metal.v0.4.0.dylib',
      'libggml.metal.v0.4.0.dylib',
      'libggml-base.dylib',
    ]);
    expect(await pluginFolderFrom('mac-arm64-metal', 'metal')).toEqual([
      'libggml-base.dylib',
      'libggml-blas.so',
      'libggml-cpu-apple_m1.so',
      'libggml-cpu-apple_m2_m3.so',
      'libggml-cpu-apple_m4.so',
      'libggml-metal.so',
      'libggml.metal.v0.4.0.dylib',
      'libllama.metal.v0.4.0.dylib',
    ]);
  });

  it('fills cuda/ from win-x64-cuda with DLLs named without lib, and no import library of the addon', async () => {
    const { package: packageName, files } = await recorded('win-x64-cuda');
    expect(selectRuntime('cuda', packageName, files).libraries).toEqual(['llama.cuda.v0.4.0.dll', 'ggml.cuda.v0.4.0.dll', 'ggml-base.dll']);
    const folder = await pluginFolderFrom('win-x64-cuda', 'cuda');
    expect(folder).toContain('ggml-cuda.dll');
    expect(folder).toContain('ggml-cpu-haswell.dll');
    expect(folder.filter((f) => /addon|common|\.lib$|\.exp$|\.json$/.test(f))).toEqual([]);
    expect(folder).toHaveLength(3 + 9 + 1); // llama, ggml, ggml-base, nine CPU variants, CUDA
  });

  it('fills cpu/ from win-x64 with its CPU variants', async () => {
    const folder = await pluginFolderFrom('win-x64', 'cpu');
    expect(folder).toContain('llama.v0.4.0.dll');
    expect(folder.filter((f) => f.startsWith('ggml-cpu-'))).toHaveLength(14);
  });

  it('fills cuda/ from linux-x64-cuda with libggml-cuda.so beside the CUDA build of llama', async () => {
    const { package: packageName, files } = await recorded('linux-x64-cuda');
    expect(selectRuntime('cuda', packageName, files).libraries).toEqual([
      'libllama.cuda.v0.4.0.so',
      'libggml.cuda.v0.4.0.so',
      'libggml-base.so',
    ]);
    const folder = await pluginFolderFrom('linux-x64-cuda', 'cuda');
    expect(folder).toContain('libggml-cuda.so');
    expect(folder).not.toContain('libllama-common.so');
  });

  it('fills cpu/ from linux-x64', async () => {
    const folder = await pluginFolderFrom('linux-x64', 'cpu');
    expect(folder.slice(-3)).toEqual(['libggml-cpu-zen4.so', 'libggml.v0.4.0.so', 'libllama.v0.4.0.so']);
  });

  it('refuses a partial package, naming the library that is missing and the package', async () => {
    const { package: packageName, files } = await recorded('linux-x64-cuda');
    const partial = files.filter((f) => !f.includes('libggml.cuda'));
    expect(() => selectRuntime('cuda', packageName, partial)).toThrow(
      '@node-llama-cpp/linux-x64-cuda does not hold exactly one ggml library in bins/linux-x64-cuda/ (found none)',
    );
  });

  it('refuses a package holding two releases of llama side by side', async () => {
    const { package: packageName, files } = await recorded('linux-x64');
    expect(() => selectRuntime('cpu', packageName, [...files, 'bins/linux-x64/libllama.v0.5.0.so'])).toThrow(
      'found libllama.v0.4.0.so, libllama.v0.5.0.so',
    );
  });
});
