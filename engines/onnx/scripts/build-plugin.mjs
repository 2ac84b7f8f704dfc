// Builds the onnx plugin into engines/onnx/<gpu_backend>/ for every backend this platform has an ONNX Runtime for
// in onnxruntime-node (linux-x64 and darwin-arm64: cpu; win32-x64: cpu and directml), with that runtime copied
// beside it. Offline; no GPU: the folders are packaging outputs.
import { execFileSync, spawnSync } from 'node:child_process';
import { copyFileSync, existsSync, mkdirSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

import { writeUnicodeRanges } from './unicode-ranges.mjs';

const packageDir = dirname(dirname(fileURLToPath(import.meta.url)));
const require = createRequire(join(packageDir, 'package.json'));
const { version } = JSON.parse(readFileSync(join(packageDir, 'package.json'), 'utf8'));

// The runtime files of each backend, in onnxruntime-node's bin/napi-v6/<os>/<arch>/ (its N-API binding, the
// .node file, is not ONNX Runtime and stays behind).
const PLATFORMS = {
  'linux-x64': { folder: 'linux/x64', backends: ['cpu'] },
  'darwin-arm64': { folder: 'darwin/arm64', backends: ['cpu'] },
  'win32-x64': { folder: 'win32/x64', backends: ['cpu', 'directml'] },
};

function packageFolder(name) {
  const found = require.resolve.paths(name).find((dir) => existsSync(join(dir, name, 'package.json')));
  if (!found) throw new Error(`${name} is not installed: run pnpm install`);
  return join(found, name);
}

function run(command, args, options = {}) {
  execFileSync(command, args, { stdio: 'inherit', ...options });
}

const platform = PLATFORMS[`${process.platform}-${process.arch}`];
if (platform === undefined) {
  console.warn(`onnx: onnxruntime-node has no runtime for ${process.platform}-${process.arch}; no plugin is built.`);
  process.exit(0);
}
const runtimeDir = join(packageFolder('onnxruntime-node'), 'bin', 'napi-v6', platform.folder);
const generatedDir = join(packageDir, 'build', 'generated');
writeUnicodeRanges(join(generatedDir, 'unicode_ranges.h'));
const only = process.env.LLM_NODE_BUILD_BACKENDS?.split(',').filter(Boolean);

for (const backend of platform.backends.filter((b) => only === undefined || only.includes(b))) {
  const started = Date.now();
  const outputDir = join(packageDir, backend);
  rmSync(outputDir, { recursive: true, force: true });
  mkdirSync(outputDir, { recursive: true });
  const buildDir = join(packageDir, 'build', `cmake-${backend}`);
  const ninja = spawnSync('ninja', ['--version']).status === 0;
  run(
    'cmake',
    [
      '-S',
      packageDir,
      '-B',
      buildDir,
      ...(ninja && !existsSync(join(buildDir, 'CMakeCache.txt')) ? ['-G', 'Ninja'] : []),
      '-DCMAKE_BUILD_TYPE=Release',
      `-DENGINE_VERSION=${version}`,
      `-DENGINE_GPU_BACKEND=${backend}`,
      `-DENGINE_OUTPUT_DIR=${outputDir}`,
      `-DENGINE_API_INCLUDE_DIR=${dirname(require.resolve('@llm-node/abi-native/engine_api.h'))}`,
      `-DSHARED_NATIVE_DIR=${join(packageFolder('@llm-node/engine-llama-cpp'), 'src', 'native')}`,
      `-DUNICODE_RANGES_DIR=${generatedDir}`,
    ],
    { stdio: ['ignore', 'ignore', 'inherit'] },
  );
  run('cmake', ['--build', buildDir, '--config', 'Release', '--parallel', '--target', 'onnx_engine']);
  for (const file of readdirSync(runtimeDir).filter((f) => !f.endsWith('.node'))) {
    copyFileSync(join(runtimeDir, file), join(outputDir, file));
  }
  console.log(`onnx: built engines/onnx/${backend}/ in ${((Date.now() - started) / 1000).toFixed(1)} s`);
}
