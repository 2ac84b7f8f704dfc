// `pnpm start` (after `pnpm build`): runs llm-node on ./engines and ./models, making the demo model if it is
// absent, on the detected GPU — or, when there is none, on the development `cpu` build, saying so. Extra
// arguments go to llm-node: `pnpm start --port 3001`.
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { detectGpu } from '@llm-node/gpu-detect';
import { makeModel, PLATFORM_RUNTIMES } from '@llm-node/engine-llama-cpp';

export const DEMO_MODEL = 'models/llama-3.2-1b.gguf';

/**
 * What `pnpm start` does in `root`, for `platform` (`<os>-<arch>`) and a GPU detection: makes the demo model
 * when it is absent, then says which backend the node will run on and what is missing for it. Returns the
 * llm-node arguments; prints through `say`.
 */
export async function prepareStart({ root, platform, gpu, say }) {
  const demoModel = join(root, DEMO_MODEL);
  if (!existsSync(demoModel)) {
    say(`Making the demo model ${DEMO_MODEL} (random weights, Llama 3 tokenizer and chat template)…`);
    await makeModel(demoModel, { name: 'llama-3.2-1b stand-in: random weights, Llama 3 tokenizer (llm-node demo)' });
  }
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
  if (!existsSync(join(root, 'engines', 'llama_cpp', backend, 'manifest.json'))) say(missingEngine(platform, backend));
  return args;
}

function missingEngine(platform, backend) {
  const runtime = PLATFORM_RUNTIMES[platform]?.find((r) => r.backend === backend);
  const fix = runtime
    ? `\`pnpm build\` makes it from ${runtime.packageName}; if the build said that package is missing, run \`pnpm install\` and then \`pnpm build\`.`
    : `there is no prebuilt llama.cpp with a ${backend} backend for ${platform}; build one from source (engines/llama_cpp/README.md) or place another engine in engines/<engine_id>/${backend}/.`;
  return (
    `Notice: the llama_cpp engine is not built for ${backend} (engines/llama_cpp/${backend}/ is missing): ${fix}\n` +
    'The node starts anyway and lists every engine folder it found at /api/engines.\n'
  );
}

async function main() {
  const root = fileURLToPath(new URL('..', import.meta.url));
  process.chdir(root);
  const args = await prepareStart({ root, platform: `${process.platform}-${process.arch}`, gpu: await detectGpu(), say: console.log });
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
    -d '{"model_id": "llama-3.2-1b", "format": "gguf"}'

  curl -X POST ${base}/v1/chat/completions -H "Content-Type: application/json" \\
    -d '{"model": "llama-3.2-1b", "messages": [{"role": "user", "content": "Hello!"}], "stream": true, "max_tokens": 64}'

The demo model has random weights: expect fluent-looking noise. Put a real GGUF at ${DEMO_MODEL} for real text.
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
