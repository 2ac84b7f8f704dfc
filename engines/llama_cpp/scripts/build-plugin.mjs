// Builds the llama_cpp plugin into engines/llama_cpp/<gpu_backend>/ for every backend this platform's prebuilt
// llama.cpp packages provide (src/prebuilt.ts: linux-x64 cpu and cuda, darwin-arm64 metal, win32-x64 cpu and
// cuda), whether or not this machine has that GPU: the folders are packaging outputs. Headers, and the model
// maker's tokenizer and chat template, come from the matching llama.cpp source that node-llama-cpp ships as a git
// bundle; it is extracted first, so the model maker works even where no plugin can be built. Offline; no GPU.
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';

import { copyRuntime, PLATFORM_RUNTIMES, selectRuntime } from '../dist/prebuilt.js';

const packageDir = dirname(dirname(fileURLToPath(import.meta.url)));
const require = createRequire(join(packageDir, 'package.json'));
const { version } = JSON.parse(readFileSync(join(packageDir, 'package.json'), 'utf8'));

// What the build, the model maker and the native tests read from the llama.cpp source.
const SOURCE_PATHS = [
  'include',
  'ggml/include',
  'common/json-schema-to-grammar.cpp',
  'common/json-schema-to-grammar.h',
  'common/json.cpp',
  'common/json.h',
  'vendor/nlohmann',
  'models/ggml-vocab-llama-bpe.gguf',
  'models/ggml-vocab-llama-bpe.gguf.inp',
  'models/ggml-vocab-llama-spm.gguf',
  'models/ggml-vocab-llama-spm.gguf.inp',
  'models/ggml-vocab-bert-bge.gguf',
  'models/ggml-vocab-bert-bge.gguf.inp',
  'models/templates/meta-llama-Llama-3.2-3B-Instruct.jinja',
];

function run(command, args, options = {}) {
  execFileSync(command, args, { stdio: 'inherit', ...options });
}

// The installed package's folder (its files are not all in its `exports`, so not through require.resolve).
function packageFolder(name) {
  const found = require.resolve.paths(name).find((dir) => existsSync(join(dir, name, 'package.json')));
  return found ? join(found, name) : null;
}

function listFiles(root, dir = root) {
  return readdirSync(dir).flatMap((entry) => {
    const path = join(dir, entry);
    return statSync(path).isDirectory() ? listFiles(root, path) : [relative(root, path).split('\\').join('/')];
  });
}

// A partial checkout of node-llama-cpp's llama.cpp bundle under build/llama.cpp, made once per release.
function extractSource() {
  const llamaDir = join(packageFolder('node-llama-cpp'), 'llama');
  const { release } = JSON.parse(readFileSync(join(llamaDir, 'binariesGithubRelease.json'), 'utf8'));
  const target = join(packageDir, 'build', 'llama.cpp');
  const marker = join(target, '.extracted');
  const wanted = `${release}\n${SOURCE_PATHS.join('\n')}`;
  if (existsSync(marker) && readFileSync(marker, 'utf8') === wanted) {
    return target;
  }
  rmSync(target, { recursive: true, force: true });
  run('git', ['clone', '--quiet', '--no-checkout', join(llamaDir, 'gitRelease.bundle'), target]);
  run('git', ['-C', target, '-c', 'advice.detachedHead=false', 'checkout', '--quiet', 'HEAD', '--', ...SOURCE_PATHS]);
  writeFileSync(marker, wanted);
  return target;
}

function buildPlugin(runtime, packagePath, sourceDir) {
  const started = Date.now();
  const selection = selectRuntime(runtime.backend, runtime.packageName, listFiles(packagePath));
  const outputDir = join(packageDir, runtime.backend);
  rmSync(outputDir, { recursive: true, force: true }); // no library of an earlier release stays behind
  mkdirSync(outputDir, { recursive: true });
  const buildDir = join(packageDir, 'build', `cmake-${runtime.backend}`);
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
      `-DENGINE_GPU_BACKEND=${runtime.backend}`,
      `-DENGINE_OUTPUT_DIR=${outputDir}`,
      `-DENGINE_API_INCLUDE_DIR=${dirname(require.resolve('@llm-node/abi-native/engine_api.h'))}`,
      `-DLLAMA_INCLUDE_DIR=${sourceDir}`,
      `-DLLAMA_RUNTIME_LIBRARIES=${selection.libraries.join(';')}`,
    ],
    { stdio: ['ignore', 'ignore', 'inherit'] },
  );
  // The native tests' binary is built by the test that runs it: a build for `pnpm start` compiles the plugin only.
  run('cmake', ['--build', buildDir, '--config', 'Release', '--parallel', '--target', 'llama_engine']);
  return copyRuntime(selection, packagePath, outputDir).then(() => {
    console.log(
      `llama_cpp: built engines/llama_cpp/${runtime.backend}/ from ${runtime.packageName} in ${((Date.now() - started) / 1000).toFixed(1)} s`,
    );
  });
}

const platform = `${process.platform}-${process.arch}`;
const sourceDir = extractSource();
const runtimes = PLATFORM_RUNTIMES[platform];
if (runtimes === undefined) {
  console.warn(
    `llama_cpp: there is no prebuilt llama.cpp for ${platform}; no plugin is built. Build one from source (engines/llama_cpp/README.md).`,
  );
  process.exit(0);
}
// On CI a plugin the platform should have must build: a skipped one would let its tests pass by skipping.
const strict = Boolean(process.env.CI);
// `pnpm start` builds only the folder this machine's GPU needs (LLM_NODE_BUILD_BACKENDS=cuda); `pnpm build` all.
const only = process.env.LLM_NODE_BUILD_BACKENDS?.split(',').filter(Boolean);
let failed = 0;
for (const runtime of runtimes.filter((r) => only === undefined || only.includes(r.backend))) {
  const packagePath = packageFolder(runtime.packageName);
  if (!packagePath) {
    const message =
      `llama_cpp: ${runtime.packageName} is not installed, so engines/llama_cpp/${runtime.backend}/ is not built. ` +
      'Run pnpm install (the package is an optional dependency for this platform).';
    if (strict) {
      console.error(message);
      failed++;
    } else {
      console.warn(message);
    }
    continue;
  }
  try {
    await buildPlugin(runtime, packagePath, sourceDir);
  } catch (error) {
    console.error(`llama_cpp: engines/llama_cpp/${runtime.backend}/ failed to build: ${error.message}`);
    failed++;
  }
}
process.exit(failed === 0 ? 0 : 1);
