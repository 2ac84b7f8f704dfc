// Builds the llama_cpp plugin for this machine into engines/llama_cpp/<gpu_backend>/: CMake over the prebuilt
// llama.cpp of the @node-llama-cpp/<platform> package, with headers (and the model maker's tokenizer and chat
// template) taken from the matching llama.cpp source that node-llama-cpp ships as a git bundle. Offline; no GPU.
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const packageDir = dirname(dirname(fileURLToPath(import.meta.url)));
const require = createRequire(join(packageDir, 'package.json'));
const { version } = JSON.parse(readFileSync(join(packageDir, 'package.json'), 'utf8'));

// The prebuilt llama.cpp for each platform, and the backend folder it fills.
const PREBUILT = {
  'linux-x64': { name: 'linux-x64', backend: 'cpu' },
  'darwin-arm64': { name: 'mac-arm64-metal', backend: 'metal' },
  'win32-x64': { name: 'win-x64-cuda', backend: 'cuda' },
};

// What the build and the model maker read from the llama.cpp source.
const SOURCE_PATHS = [
  'include',
  'ggml/include',
  'src/llama-ext.h',
  'models/ggml-vocab-llama-bpe.gguf',
  'models/templates/meta-llama-Llama-3.2-3B-Instruct.jinja',
];

function run(command, args, options = {}) {
  try {
    execFileSync(command, args, { stdio: 'inherit', ...options });
  } catch {
    console.error(`llama_cpp: ${command} ${args.join(' ')} failed`);
    process.exit(1);
  }
}

// The installed package's folder (its files are not all in its `exports`, so not through require.resolve).
function packageFolder(name) {
  const found = require.resolve.paths(name).find((dir) => existsSync(join(dir, name, 'package.json')));
  return found ? join(found, name) : null;
}

// A partial checkout of node-llama-cpp's llama.cpp bundle under build/llama.cpp, made once per release.
function extractSource() {
  const llamaDir = join(packageFolder('node-llama-cpp'), 'llama');
  const { release } = JSON.parse(readFileSync(join(llamaDir, 'binariesGithubRelease.json'), 'utf8'));
  const target = join(packageDir, 'build', 'llama.cpp');
  const marker = join(target, '.extracted');
  if (existsSync(marker) && readFileSync(marker, 'utf8') === release) {
    return target;
  }
  rmSync(target, { recursive: true, force: true });
  run('git', ['clone', '--quiet', '--no-checkout', join(llamaDir, 'gitRelease.bundle'), target]);
  run('git', ['-C', target, '-c', 'advice.detachedHead=false', 'checkout', '--quiet', 'HEAD', '--', ...SOURCE_PATHS]);
  writeFileSync(marker, release);
  return target;
}

const platform = `${process.platform}-${process.arch}`;
const prebuilt = PREBUILT[platform];
const prebuiltPackage = prebuilt && packageFolder(`@node-llama-cpp/${prebuilt.name}`);
if (!prebuiltPackage) {
  const missing = prebuilt
    ? `@node-llama-cpp/${prebuilt.name} is not installed, so there is no llama.cpp to build against`
    : `there is no prebuilt llama.cpp for ${platform}`;
  // linux-x64's package is a dependency of this package and must be there. The others are added where the
  // registry has them (README.md, "What the build produces"); without one the plugin is skipped, not failed.
  if (platform === 'linux-x64') {
    console.error(`llama_cpp: ${missing}. Run pnpm install with the npm registry reachable.`);
    process.exit(1);
  }
  console.warn(`llama_cpp: ${missing}; skipping the plugin. Add the package or build from source (engines/llama_cpp/README.md).`);
  process.exit(0);
}

const started = Date.now();
const sourceDir = extractSource();
const buildDir = join(packageDir, 'build', `cmake-${prebuilt.backend}`);
const ninja = spawnSync('ninja', ['--version']).status === 0;
run('cmake', [
  '-S', packageDir,
  '-B', buildDir,
  ...(ninja && !existsSync(join(buildDir, 'CMakeCache.txt')) ? ['-G', 'Ninja'] : []),
  '-DCMAKE_BUILD_TYPE=Release',
  `-DENGINE_VERSION=${version}`,
  `-DENGINE_GPU_BACKEND=${prebuilt.backend}`,
  `-DENGINE_API_INCLUDE_DIR=${dirname(require.resolve('@llm-node/abi-native/engine_api.h'))}`,
  `-DLLAMA_PREBUILT_DIR=${join(prebuiltPackage, 'bins', prebuilt.name)}`,
  `-DLLAMA_INCLUDE_DIR=${sourceDir}`,
], { stdio: ['ignore', 'ignore', 'inherit'] });
run('cmake', ['--build', buildDir, '--config', 'Release', '--parallel']);
console.log(`llama_cpp: built engines/llama_cpp/${prebuilt.backend}/ in ${((Date.now() - started) / 1000).toFixed(1)} s`);
