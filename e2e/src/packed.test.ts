import { execFile, spawn } from 'node:child_process';
import { mkdir, mkdtemp, readdir, rm, symlink } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { makeModel } from '@llm-node/engine-llama-cpp';
import OpenAI from 'openai';
import { afterAll, describe, expect, it } from 'vitest';

// The node as a user gets it from the npm registry: every package packed with `pnpm pack` (the N-API binding
// with its prebuild inside, the llama_cpp engine as its linux-x64 platform package), installed with npm into a
// clean prefix, and run with npx, with no compiler on PATH.

const run = promisify(execFile);
const repo = fileURLToPath(new URL('../../', import.meta.url));
const packed = [
  'packages/gpu-detect',
  'packages/manifest',
  'packages/abi-native',
  'packages/registry',
  'packages/server',
  'packages/cli',
  'engines/llama_cpp/npm/linux-x64',
];

let root: string | undefined;
afterAll(() => root && rm(root, { recursive: true, force: true }));

describe.skipIf(process.platform !== 'linux' || process.arch !== 'x64')('the published packages', () => {
  it('install without a compiler and serve a chat through the packaged llama_cpp engine with npx', async () => {
    root = await mkdtemp(join(tmpdir(), 'llm-node-packed-'));
    const tarballs = join(root, 'tarballs');
    await run('pnpm', ['run', 'prebuildify'], { cwd: join(repo, 'packages/abi-native') });
    for (const dir of packed) {
      // pnpm pack turns workspace:^ ranges into the versions being packed.
      await run('pnpm', ['pack', '--pack-destination', tarballs], { cwd: join(repo, dir) });
    }

    // PATH holds node, npm, npx and the shell npm runs scripts with, and nothing to compile with.
    const bin = join(root, 'bin');
    await mkdir(bin);
    const nodeDir = dirname(process.execPath);
    for (const tool of ['node', 'npm', 'npx']) await symlink(join(nodeDir, tool), join(bin, tool));
    await symlink('/bin/sh', join(bin, 'sh'));
    const env: NodeJS.ProcessEnv = { ...process.env, PATH: bin };
    for (const compiler of ['CC', 'CXX']) delete env[compiler];

    const prefix = join(root, 'prefix');
    const files = (await readdir(tarballs)).map((f) => join(tarballs, f));
    // A registry request that stalls is given up after a minute and tried again, rather than npm's five minutes
    // twice over, which outlast the test.
    const fetchLimits = ['--fetch-timeout=60000', '--fetch-retries=4'];
    await run('npm', ['install', '--prefix', prefix, '--no-audit', '--no-fund', ...fetchLimits, ...files], { cwd: root, env });
    const { stdout } = await run('npx', ['--no-install', '@llm-node/cli', '--version'], { cwd: prefix, env });
    expect(stdout.trim()).toMatch(/^llm-node \d+\.\d+\.\d+ \(engine ABI 1\)$/);

    const models = join(root, 'models');
    await makeModel(join(models, 'tiny.gguf'));
    // In a process group of its own: npx runs the command as its child, and the stop below must reach it.
    const node = spawn('npx', ['--no-install', '@llm-node/cli', '--gpu-backend', 'cpu', '--models-dir', models, '--port', '0'], {
      cwd: prefix,
      env,
      detached: true,
    });
    try {
      let output = '';
      node.stdout.on('data', (data) => (output += data));
      node.stderr.on('data', (data) => (output += data));
      await expect.poll(() => /llm-node listening on (http:\/\/[^\s"]+)/.exec(output)?.[1], { timeout: 60_000 }).toBeDefined();
      const base = /llm-node listening on (http:\/\/[^\s"]+)/.exec(output)![1]!;

      const { engines } = (await (await fetch(`${base}/api/engines`)).json()) as {
        engines: { id: string; status: string; path: string }[];
      };
      expect(engines).toContainEqual(expect.objectContaining({ id: 'llama_cpp', status: 'loaded' }));
      // A chat that hangs fails here, named, instead of running into the test's own limit.
      const client = new OpenAI({ baseURL: `${base}/v1`, apiKey: 'unused', timeout: 60_000, maxRetries: 0 });
      const stream = await client.chat.completions.create({
        model: 'tiny',
        messages: [{ role: 'user', content: 'Hello!' }],
        max_tokens: 8,
        stream: true,
      });
      let tokens = 0;
      for await (const chunk of stream) if (chunk.choices[0]?.delta.content) tokens++;
      expect(tokens).toBeGreaterThan(0);
    } finally {
      process.kill(-node.pid!, 'SIGTERM');
      await new Promise((resolve) => node.once('close', resolve));
    }
  }, 600_000);
});
