// `pnpm start`: builds what the node needs on this machine (the node and the engine that serves the demo model,
// for the detected GPU's backend only; `pnpm build` builds every engine and folder), then runs llm-node on
// ./engines and ./models, making the demo model if it is absent, on the detected GPU — or, when there is none, on
// the development `cpu` build, saying so. A DirectML GPU is served by the onnx engine, with an ONNX demo model;
// every other backend by llama_cpp.
// Extra arguments go to llm-node: `pnpm start --port 3001`.
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { buildTypeScript } from './build-typescript.mjs';

export const DEMO_MODEL = 'models/llama-3.2-1b.gguf';
export const ONNX_DEMO_MODEL = 'models/llama-3.2-1b-onnx';

const ENGINE_PACKAGES = { llama_cpp: '@llm-node/engine-llama-cpp', onnx: '@llm-node/engine-onnx' };

/** The engine that serves the demo model: onnx on a DirectML GPU (llama.cpp has no DirectML back-end), else llama_cpp. */
function demoEngine(gpu) {
  return gpu.found && gpu.detection.backend === 'directml' ? 'onnx' : 'llama_cpp';
}

/**
 * What `pnpm start` does in `root`, for `platform` (`<os>-<arch>`) and a GPU detection: makes the demo model
 * when it is absent, then says which backend the node will run on and what is missing for it. Returns the
 * llm-node arguments and the demo model's id and format; prints through `say`.
 */
export async function prepareStart({ root, platform, gpu, say }) {
  const engine = demoEngine(gpu);
  const demo = engine === 'onnx' ? await makeOnnxDemo(root, say) : await makeGgufDemo(root, say);
  const args = ['--engines-dir', './engines', '--models-dir', './models'];
  let backend;
  if (gpu.found) {
    backend = gpu.detection.backend;
  } else {
    backend = 'cpu';
    args.push('--gpu-backend', 'cpu');
    say(
      'Notice: no GPU found (' +
        gpu.tried.join('; ') +
        ').\n' +
        'llm-node itself never falls back to the CPU on its own; this demo starts it on the development cpu build instead\n' +
        '(--gpu-backend cpu). On a machine with a GPU it uses the GPU.\n',
    );
  }
  if (!existsSync(join(root, 'engines', engine, backend, 'manifest.json'))) say(await missingEngine(platform, backend, engine));
  return { args, demo };
}

async function makeGgufDemo(root, say) {
  const { makeModel } = await import('@llm-node/engine-llama-cpp');
  if (!existsSync(join(root, DEMO_MODEL))) {
    say(`Making the demo model ${DEMO_MODEL} (random weights, Llama 3 tokenizer and chat template)…`);
    await makeModel(join(root, DEMO_MODEL), { name: 'llama-3.2-1b stand-in: random weights, Llama 3 tokenizer (llm-node demo)' });
  }
  return { id: 'llama-3.2-1b', format: 'gguf', path: DEMO_MODEL };
}

async function makeOnnxDemo(root, say) {
  const { makeOnnxModel } = await import('@llm-node/engine-onnx');
  if (!existsSync(join(root, ONNX_DEMO_MODEL, 'model.onnx'))) {
    say(`Making the demo model ${ONNX_DEMO_MODEL}/ (an ONNX decoder with random weights, Llama 3 tokenizer and chat template)…`);
    await makeOnnxModel(join(root, ONNX_DEMO_MODEL));
  }
  return { id: 'llama-3.2-1b-onnx', format: 'onnx', path: `${ONNX_DEMO_MODEL}/` };
}

async function missingEngine(platform, backend, engine) {
  if (engine === 'onnx') {
    return (
      `Notice: the onnx engine is not built for ${backend} (engines/onnx/${backend}/ is missing): \`pnpm build\` makes it ` +
      'from onnxruntime-node; if the build said that package is missing, run `pnpm install` and then `pnpm build`.\n' +
      'The node starts anyway and lists every engine folder it found at /api/engines.\n'
    );
  }
  const { PLATFORM_RUNTIMES } = await import('@llm-node/engine-llama-cpp');
  const runtime = PLATFORM_RUNTIMES[platform]?.find((r) => r.backend === backend);
  const fix = runtime
    ? `\`pnpm build\` makes it from ${runtime.packageName}; if the build said that package is missing, run \`pnpm install\` and then \`pnpm build\`.`
    : `there is no prebuilt llama.cpp with a ${backend} backend for ${platform}; build one from source (engines/llama_cpp/README.md) or place another engine in engines/<engine_id>/${backend}/.`;
  return (
    `Notice: the llama_cpp engine is not built for ${backend} (engines/llama_cpp/${backend}/ is missing): ${fix}\n` +
    'The node starts anyway and lists every engine folder it found at /api/engines.\n'
  );
}

/**
 * The folders of the workspace packages under packages/ that `name` needs at run time (its dependencies, theirs,
 * and itself).
 */
export function runtimePackages(root, name) {
  const byName = new Map();
  for (const folder of readdirSync(join(root, 'packages'))) {
    const manifestPath = join(root, 'packages', folder, 'package.json');
    if (!existsSync(manifestPath)) continue;
    const manifest = JSON.parse(readFileSync(manifestPath, 'utf8'));
    byName.set(manifest.name, { dir: join(root, 'packages', folder), manifest });
  }
  const needed = new Map();
  const visit = (packageName) => {
    const found = byName.get(packageName);
    if (!found || needed.has(packageName)) return;
    needed.set(packageName, found.dir);
    for (const dependency of Object.keys(found.manifest.dependencies ?? {})) visit(dependency);
  };
  visit(name);
  return [...needed.values()];
}

/** turbo's build of one engine package (its C++ plugin), quiet unless something fails. */
function buildEngine(packageName, backend) {
  // The root's turbo, its own launcher run through Node as `pnpm exec turbo` would, without a second start of pnpm.
  const turbo = createRequire(new URL('../package.json', import.meta.url)).resolve('turbo/bin/turbo');
  const child = spawn(process.execPath, [turbo, 'run', 'build', `--filter=${packageName}`, '--output-logs=errors-only'], {
    stdio: 'inherit',
    env: { ...process.env, LLM_NODE_BUILD_BACKENDS: backend },
  });
  return once(child, 'exit').then(([code]) => code ?? 1);
}

async function main() {
  const root = fileURLToPath(new URL('..', import.meta.url));
  process.chdir(root);
  console.log('Building what the node needs (a first build compiles the engine plugin: about 15 s on two cores)…');
  // The node's packages are built here, in this process: their builds are the TypeScript build alone, a tenth of
  // a second each, where a turbo task each would start pnpm (most of a first start's time outside the plugin's
  // C++ on two cores). The binding abi-native adds is built when it is installed. gpu-detect comes first: the
  // GPU decides which plugin folder turbo builds, beside this, for the engine that serves the demo model.
  const packages = runtimePackages(root, '@llm-node/cli');
  const gpuDetect = join(root, 'packages', 'gpu-detect');
  if (!buildTypeScript(gpuDetect)) process.exit(1);
  const { detectGpu } = await import('@llm-node/gpu-detect');
  const gpu = await detectGpu();
  const engineBuilt = buildEngine(ENGINE_PACKAGES[demoEngine(gpu)], gpu.found ? gpu.detection.backend : 'cpu');
  if (!packages.filter((dir) => dir !== gpuDetect).every((dir) => buildTypeScript(dir))) process.exit(1);
  const engineStatus = await engineBuilt;
  if (engineStatus !== 0) process.exit(engineStatus);
  const { args, demo } = await prepareStart({ root, platform: `${process.platform}-${process.arch}`, gpu, say: console.log });
  const extra = process.argv.slice(2).filter((a) => a !== '--');
  const cli = fileURLToPath(import.meta.resolve('@llm-node/cli/bin'));
  const node = spawn(process.execPath, [cli, ...args, ...extra], { stdio: 'inherit' });
  for (const signal of ['SIGINT', 'SIGTERM']) process.on(signal, () => node.kill(signal));
  node.on('exit', (code, signal) => process.exit(code ?? (signal ? 1 : 0)));

  const port = flagValue(extra, '--port') ?? process.env.LLM_NODE_PORT ?? '3000';
  const base = `http://localhost:${port}`;
  if (await ready(node, `${base}/health`)) {
    console.log(`
Try it:

  curl ${base}/api/engines

  curl -X POST ${base}/api/models/load -H "Content-Type: application/json" \\
    -d '{"model_id": "${demo.id}", "format": "${demo.format}"}'

  curl -X POST ${base}/v1/chat/completions -H "Content-Type: application/json" \\
    -d '{"model": "${demo.id}", "messages": [{"role": "user", "content": "Hello!"}], "stream": true, "max_tokens": 64}'

The demo model has random weights: expect fluent-looking noise. Put a real ${demo.format === 'onnx' ? 'ONNX export' : 'GGUF'} at ${demo.path} for real text.
Stop with Ctrl+C.
`);
  }
}

function flagValue(extra, flag) {
  const i = extra.indexOf(flag);
  return i >= 0 ? extra[i + 1] : extra.find((a) => a.startsWith(`${flag}=`))?.slice(flag.length + 1);
}

async function ready(node, url) {
  for (let i = 0; i < 300 && node.exitCode === null; i++) {
    try {
      if ((await fetch(url)).ok) return true;
    } catch {
      // not listening yet
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  return false;
}

if (process.argv[1] === fileURLToPath(import.meta.url)) await main();
