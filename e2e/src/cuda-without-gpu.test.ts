import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { chmod, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

// The cuda plugin folder that `pnpm build` makes on linux-x64, on this machine without an NVIDIA GPU: the node
// says CUDA and that no device was found; never a signal, a hang, or a silent run on the CPU.

const enginesDir = fileURLToPath(new URL('../../engines/', import.meta.url));
const cudaBuilt = existsSync(join(enginesDir, 'llama_cpp', 'cuda', 'manifest.json'));
if (!cudaBuilt && process.platform === 'linux' && process.arch === 'x64' && process.env.CI) {
  throw new Error('engines/llama_cpp/cuda/ was not built');
}
const bin = join(dirname(createRequire(import.meta.url).resolve('@llm-node/cli')), 'bin.js');

let tools: string;
beforeAll(async () => {
  tools = await mkdtemp(join(tmpdir(), 'llm-node-cuda-'));
});
afterAll(() => rm(tools, { recursive: true, force: true }));

function llmNode(args: string[], path: string) {
  const child = spawn(process.execPath, [bin, '--engines-dir', enginesDir, '--port', '0', ...args], {
    env: { ...process.env, PATH: path },
  });
  let output = '';
  child.stdout.on('data', (data) => (output += data));
  child.stderr.on('data', (data) => (output += data));
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
    child.on('close', (code, signal) => resolve({ code, signal })),
  );
  return { child, output: () => output, exited };
}

describe.skipIf(!cudaBuilt || process.platform === 'win32')('--gpu-backend cuda on a machine without an NVIDIA GPU', () => {
  it('exits 1 saying no CUDA GPU was found and what it tried, when there is no nvidia-smi', async () => {
    const node = llmNode(['--gpu-backend', 'cuda'], tools);
    expect(await node.exited).toEqual({ code: 1, signal: null });
    expect(node.output()).toContain('No CUDA GPU found (--gpu-backend cuda). Tried:');
    expect(node.output()).toContain('nvidia-smi');
  });

  it('rejects the cuda engine, naming CUDA and the library that does not load, when a driver tool claims a GPU', async () => {
    // nvidia-smi answers, but the CUDA driver and runtime libraries are not on this machine.
    const nvidiaSmi = join(tools, 'nvidia-smi');
    await writeFile(nvidiaSmi, '#!/bin/sh\necho "0, NVIDIA H100 80GB HBM3, 81559, 81000, 559"\n');
    await chmod(nvidiaSmi, 0o755);
    const node = llmNode(['--gpu-backend', 'cuda', '--log-level', 'info'], tools);
    try {
      await expect.poll(() => /llm-node listening on (http:\/\/[^\s"]+)/.exec(node.output())?.[1], { timeout: 60_000 }).toBeDefined();
      const base = /llm-node listening on (http:\/\/[^\s"]+)/.exec(node.output())![1]!;
      const { engines } = (await (await fetch(`${base}/api/engines`)).json()) as {
        engines: { id: string; gpu_backend: string; status: string; error?: { message: string } }[];
      };
      const llama = engines.find((e) => e.id === 'llama_cpp' && e.gpu_backend === 'cuda');
      expect(llama).toMatchObject({ status: 'rejected', error: { message: expect.stringContaining('no CUDA device found') } });
      expect(llama!.error!.message).toMatch(/libggml-cuda\.so\) does not load: .*lib(cuda|cudart|cublas)\.so/);
    } finally {
      node.child.kill('SIGTERM');
    }
    expect(await node.exited).toEqual({ code: 0, signal: null });
  });
});
