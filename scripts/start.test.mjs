import { existsSync, readFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { basename, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterEach, describe, expect, it } from 'vitest';
import { DEMO_MODEL, ONNX_DEMO_MODEL, prepareStart, runtimePackages } from './start.mjs';

// `pnpm start` as it goes on each platform, in a fresh checkout where no plugin was built for it: the demo
// model is made from the llama.cpp source the build extracted (no plugin needed), and the notice says what
// is missing and the command that fixes it.

let root;
afterEach(() => root && rm(root, { recursive: true, force: true }));

async function startOn(platform, gpu) {
  root = await mkdtemp(join(tmpdir(), 'llm-node-start-'));
  const said = [];
  const { args, demo } = await prepareStart({ root, platform, gpu, say: (line) => said.push(line) });
  return { args, demo, said: said.join('\n') };
}

const found = (backend) => ({ found: true, detection: { backend, source: 'test', devices: [] } });

describe('pnpm start', () => {
  it('on darwin-arm64 makes the demo model and says the metal engine is missing and how to get it', async () => {
    const { args, said } = await startOn('darwin-arm64', found('metal'));
    expect(existsSync(join(root, DEMO_MODEL))).toBe(true);
    expect(args).toEqual(['--engines-dir', './engines', '--models-dir', './models']);
    expect(said).toContain('the llama_cpp engine is not built for metal (engines/llama_cpp/metal/ is missing)');
    expect(said).toContain('@node-llama-cpp/mac-arm64-metal');
  });

  it('on win32-x64 with a CUDA GPU says the cuda engine is missing and names its package', async () => {
    const { said } = await startOn('win32-x64', found('cuda'));
    expect(existsSync(join(root, DEMO_MODEL))).toBe(true);
    expect(said).toContain('not built for cuda');
    expect(said).toContain('@node-llama-cpp/win-x64-cuda');
  });

  it('on win32-x64 with a DirectML GPU makes the ONNX demo model for the onnx engine, and says that engine is missing', async () => {
    const { demo, said } = await startOn('win32-x64', found('directml'));
    expect(existsSync(join(root, ONNX_DEMO_MODEL, 'model.onnx'))).toBe(true);
    expect(existsSync(join(root, DEMO_MODEL))).toBe(false);
    expect(demo).toMatchObject({ id: 'llama-3.2-1b-onnx', format: 'onnx' });
    expect(said).toContain('the onnx engine is not built for directml (engines/onnx/directml/ is missing)');
  });

  it('without a GPU runs the cpu build, saying so', async () => {
    const { args, said } = await startOn('linux-x64', { found: false, tried: ['nvidia-smi: not found on PATH'] });
    expect(args).toContain('--gpu-backend');
    expect(said).toContain('no GPU found (nvidia-smi: not found on PATH)');
  });

  it("builds the node's packages as their own build scripts do: the TypeScript build (and abi-native's binding, built at install)", () => {
    const repo = fileURLToPath(new URL('..', import.meta.url));
    const packages = runtimePackages(repo, '@llm-node/cli');
    expect(packages.map((dir) => basename(dir)).sort()).toEqual(['abi-native', 'cli', 'gpu-detect', 'manifest', 'registry', 'server']);
    for (const dir of packages) {
      const { name, scripts } = JSON.parse(readFileSync(join(dir, 'package.json'), 'utf8'));
      expect(scripts.build.replace(/^node-gyp-build && /, ''), name).toBe('node ../../scripts/build-typescript.mjs');
    }
    expect(JSON.parse(readFileSync(join(repo, 'packages', 'abi-native', 'package.json'), 'utf8')).scripts.install).toBe('node-gyp-build');
  });
});
