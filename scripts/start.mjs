// `pnpm start` (after `pnpm build`): runs llm-node on ./engines and ./models, making the demo model if it
// is absent, on the detected GPU — or, when there is none, on the development `cpu` build, saying so.
// Extra arguments go to llm-node: `pnpm start --port 3001`.
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { detectGpu } from '@llm-node/gpu-detect';
import { makeModel } from '@llm-node/engine-llama-cpp';

const root = fileURLToPath(new URL('..', import.meta.url));
process.chdir(root);

const demoModel = 'models/llama-3.2-1b.gguf';
if (!existsSync(demoModel)) {
  console.log(`Making the demo model ${demoModel} (random weights, Llama 3 tokenizer and chat template)…`);
  await makeModel(demoModel, { name: 'llama-3.2-1b stand-in: random weights, Llama 3 tokenizer (llm-node demo)' });
}

const args = ['--engines-dir', './engines', '--models-dir', './models'];
const gpu = await detectGpu();
let backend;
if (gpu.found) {
  backend = gpu.detection.backend;
} else {
  backend = 'cpu';
  args.push('--gpu-backend', 'cpu');
  console.log(
    'Notice: no GPU found (' + gpu.tried.join('; ') + ').\n' +
      'llm-node itself never falls back to the CPU; this demo starts it on the development cpu build instead\n' +
      '(--gpu-backend cpu). On a machine with a GPU it uses the GPU.\n',
  );
}
if (!existsSync(`engines/llama_cpp/${backend}/manifest.json`)) {
  console.log(`Notice: the llama_cpp engine is not built for ${backend} (engines/llama_cpp/${backend}/); see engines/llama_cpp/README.md.\n`);
}

const extra = process.argv.slice(2).filter((a) => a !== '--');
const node = spawn(process.execPath, ['packages/cli/dist/bin.js', ...args, ...extra], { stdio: 'inherit' });
for (const signal of ['SIGINT', 'SIGTERM']) process.on(signal, () => node.kill(signal));
node.on('exit', (code, signal) => process.exit(code ?? (signal ? 1 : 0)));

const port = valueOf('--port') ?? process.env.LLM_NODE_PORT ?? '3000';
const base = `http://localhost:${port}`;
if (await ready(`${base}/health`)) {
  console.log(`
Try it (the seed's commands):

  curl ${base}/api/engines

  curl -X POST ${base}/api/models/load -H "Content-Type: application/json" \\
    -d '{"model_id": "llama-3.2-1b", "format": "gguf"}'

  curl -X POST ${base}/v1/chat/completions -H "Content-Type: application/json" \\
    -d '{"model": "llama-3.2-1b", "messages": [{"role": "user", "content": "Hello!"}], "stream": true}'

The demo model has random weights: expect fluent-looking noise. Put a real GGUF at ${demoModel} for real text.
Stop with Ctrl+C.
`);
}

function valueOf(flag) {
  const i = extra.indexOf(flag);
  return i >= 0 ? extra[i + 1] : extra.find((a) => a.startsWith(`${flag}=`))?.slice(flag.length + 1);
}

async function ready(url) {
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
