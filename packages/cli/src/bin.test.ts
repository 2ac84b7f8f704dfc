import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { setTimeout } from 'node:timers/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildTestPlugin, installTestPlugin } from '@llm-node/abi-native/testing';
import { writeGgufModel } from '@llm-node/registry/testing';

// The real command, as `npx llm-node` runs it: the built dist/bin.js in its own process.
const bin = fileURLToPath(new URL('../dist/bin.js', import.meta.url));

let root: string;
let enginesDir: string;
let modelsDir: string;

beforeAll(async () => {
  root = await mkdtemp(join(tmpdir(), 'llm-node-cli-'));
  enginesDir = join(root, 'engines');
  modelsDir = join(root, 'models');
  // The plugin guide's minimal plugin with the guide's manifest, a streaming engine, and one built for ABI 2.
  await installTestPlugin({
    enginesDir,
    plugin: await buildTestPlugin('minimal'),
    manifest: { architectures: ['custom'], formats: ['safetensors'] },
  });
  await installTestPlugin({
    enginesDir,
    plugin: await buildTestPlugin('echo', { defines: { ECHO_TOKEN_DELAY_US: '20000' } }),
    manifest: { architectures: ['echo'] },
  });
  await installTestPlugin({ enginesDir, plugin: await buildTestPlugin('abi2') });
  // An engine that takes 20 s to estimate a model's memory, for the models of architecture 'slow_estimate'.
  await installTestPlugin({
    enginesDir,
    plugin: await buildTestPlugin('echo', { defines: { ENGINE_ID: 'echo_slow_estimate', ECHO_ESTIMATE_DELAY_US: '20000000' } }),
    manifest: { architectures: ['slow_estimate'] },
  });
  await writeGgufModel(join(modelsDir, 'slow-estimate.gguf'), { architecture: 'slow_estimate' });
  await writeGgufModel(join(modelsDir, 'llama-3.2-1b.gguf'), {
    architecture: 'echo',
    chatTemplate: '{% for m in messages %}{{ m.role }}: {{ m.content }}\n{% endfor %}assistant:',
  });
}, 120_000);

afterAll(() => rm(root, { recursive: true, force: true }));

interface Run {
  child: ChildProcessWithoutNullStreams;
  stdout: () => string;
  stderr: () => string;
  exited: Promise<number | null>;
}

/** Runs the command in a process group of its own, as a shell runs a job: a signal to the group reaches its engine hosts too. */
function run(args: string[], env: NodeJS.ProcessEnv = process.env): Run {
  const child = spawn(process.execPath, [bin, ...args], { env, detached: true });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (d) => (stdout += d));
  child.stderr.on('data', (d) => (stderr += d));
  const exited = new Promise<number | null>((resolve) => child.on('close', (code) => resolve(code)));
  return { child, stdout: () => stdout, stderr: () => stderr, exited };
}

/** Starts a node on a free port and waits for its "listening" log line. */
async function startNode(...extra: string[]): Promise<Run & { url: string; logLines: () => { msg: string }[] }> {
  const node = run(['--gpu-backend', 'cpu', '--engines-dir', enginesDir, '--models-dir', modelsDir, '--port', '0', ...extra]);
  const logLines = () =>
    node
      .stdout()
      .split('\n')
      .filter(Boolean)
      .map((line) => JSON.parse(line) as { msg: string });
  await expect.poll(() => logLines().some((l) => l.msg.startsWith('llm-node listening on')), { timeout: 20_000 }).toBe(true);
  const url = logLines()
    .find((l) => l.msg.startsWith('llm-node listening on'))!
    .msg.replace('llm-node listening on ', '');
  return { ...node, url, logLines };
}

describe('the llm-node command', () => {
  it('exits 1 without a GPU, saying what it tried and how to proceed', async () => {
    const node = run(['--engines-dir', enginesDir], { ...process.env, PATH: join(root, 'no-tools-here') });
    expect(await node.exited).toBe(1);
    expect(node.stderr()).toContain('No GPU found. Tried:');
    expect(node.stderr()).toContain('never falls back to the CPU on its own');
    expect(node.stderr()).toContain('--gpu-backend cpu');
  });

  it('exits 2 on a bad flag value, quoting it', async () => {
    const node = run(['--vram-limit', 'lots']);
    expect(await node.exited).toBe(2);
    expect(node.stderr()).toContain("'lots'");
  });

  it("warns of a VRAM limit above the device's memory and of a models dir that does not exist, and starts", async () => {
    const node = run([
      '--gpu-backend',
      'cpu',
      '--engines-dir',
      enginesDir,
      '--models-dir',
      join(root, 'nowhere'),
      '--port',
      '0',
      '--vram-limit',
      '999T',
    ]);
    const warnings = () =>
      node
        .stdout()
        .split('\n')
        .filter(Boolean)
        .map((line) => JSON.parse(line) as { level: number; msg: string })
        .filter((line) => line.level === 40)
        .map((line) => line.msg);
    await expect.poll(() => node.stdout().includes('llm-node listening on'), { timeout: 20_000 }).toBe(true);
    expect(warnings()).toEqual(
      expect.arrayContaining([
        expect.stringMatching(/^--vram-limit 999TB is more than GPU 0 has \(/),
        expect.stringMatching(/^The models dir .*nowhere does not exist/),
      ]),
    );
    node.child.kill('SIGTERM');
    expect(await node.exited).toBe(0);
  });

  it('exits 1 when the engines dir does not exist', async () => {
    const node = run(['--gpu-backend', 'cpu', '--engines-dir', join(root, 'missing'), '--port', '0']);
    expect(await node.exited).toBe(1);
    expect(node.stderr()).toContain('Cannot use the engines dir');
  });

  it("logs each plugin's outcome at start-up and serves the README's curl commands", async () => {
    const node = await startNode();
    try {
      const messages = node.logLines().map((l) => l.msg);
      expect(messages).toContainEqual(expect.stringMatching(/^GPU 0 \(cpu via os\): .+ RAM/));
      expect(messages).toContainEqual(expect.stringMatching(/^plugin my_engine 1\.0\.0 \(.+\): loaded$/));
      expect(messages).toContainEqual(
        expect.stringMatching(/^plugin abi2 .+: rejected: ABI version mismatch: expected 1, got 2 \(abi_mismatch\)$/),
      );
      // The models it found, once it listens.
      await expect
        .poll(() => node.logLines().map((l) => l.msg))
        .toContainEqual(expect.stringMatching(/^model llama-3\.2-1b \(gguf echo, .+ on disk\): echo, about .+ VRAM$/));

      // curl http://localhost:3000/api/engines
      const engines = (await (await fetch(`${node.url}/api/engines`)).json()) as { engines: { id: string; status: string }[] };
      expect(engines.engines).toContainEqual(expect.objectContaining({ id: 'my_engine', status: 'loaded' }));

      // curl -X POST .../api/models/load -d '{"model_id": "llama-3.2-1b", "format": "gguf"}'
      const load = await fetch(`${node.url}/api/models/load`, {
        method: 'POST',
        headers: { 'Content-Type': 'application/json' },
        body: '{\n    "model_id": "llama-3.2-1b",\n    "format": "gguf"\n  }',
      });
      expect(load.status).toBe(200);

      // curl -X POST .../v1/chat/completions -d '{... "stream": true}'
      const chat = await fetch(`${node.url}/v1/chat/completions`, {
        method: 'POST',
        headers: { 'Content-Type': 'application/json' },
        body: '{\n    "model": "llama-3.2-1b",\n    "messages": [{"role": "user", "content": "Hello!"}],\n    "stream": true\n  }',
      });
      const events = await chat.text();
      expect(events).toContain('"content":" Hello!"');
      expect(events.trimEnd().endsWith('data: [DONE]')).toBe(true);
    } finally {
      node.child.kill('SIGTERM');
      await node.exited;
    }
  });

  it('loads the models named with --load at start, and logs a load that fails', async () => {
    const node = await startNode('--load', 'llama-3.2-1b,no-such-model');
    try {
      const lines = () => node.logLines() as { msg: string; model?: string; phase?: string }[];
      await expect.poll(() => lines().find((l) => l.msg.startsWith('--load no-such-model'))).toBeTruthy();
      expect(lines()).toContainEqual(expect.objectContaining({ msg: 'loading', model: 'llama-3.2-1b', phase: 'weights' }));
      expect(lines()).toContainEqual(expect.objectContaining({ msg: 'model loaded', model: 'llama-3.2-1b' }));
      const listed = (await (await fetch(`${node.url}/v1/models`)).json()) as { data: { id: string }[] };
      expect(listed.data.map((m) => m.id)).toContain('llama-3.2-1b');
    } finally {
      node.child.kill('SIGTERM');
      await node.exited;
    }
  });

  it('listens within seconds when the model named with --load is slow to admit', async () => {
    const started = performance.now();
    const node = await startNode('--load', 'slow-estimate');
    try {
      expect(performance.now() - started).toBeLessThan(10_000);
      expect((await fetch(`${node.url}/health`)).status).toBe(200);
    } finally {
      process.kill(-node.child.pid!, 'SIGKILL'); // its engine host too, which sleeps in the estimate
      await node.exited;
    }
  }, 20_000);

  /** A streamed chat of `maxTokens` tokens on the slow echo engine (20 ms a token), its reader at the first event. */
  async function openStream(url: string, maxTokens: number) {
    const response = await fetch(`${url}/v1/chat/completions`, {
      method: 'POST',
      headers: { 'Content-Type': 'application/json' },
      body: JSON.stringify({
        model: 'llama-3.2-1b',
        messages: [{ role: 'user', content: 'count' }],
        stream: true,
        ignore_eos: true,
        max_tokens: maxTokens,
      }),
    });
    const reader = response.body!.getReader();
    await reader.read(); // the stream is open and producing
    return async () => {
      let rest = '';
      for (let r = await reader.read(); !r.done; r = await reader.read()) rest += new TextDecoder().decode(r.value);
      return rest.trimEnd().split('\n\n').at(-1)!;
    };
  }

  // Sent to the whole process group, as Ctrl-C in a terminal and a service manager's stop do: the engine hosts get
  // the signal too, and must leave the ending to the node.
  it.each(['SIGINT', 'SIGTERM'] as const)(
    'on %s to its process group, and the same signal passed on by a parent, drains: refuses new requests, lets the open stream finish, unloads, shuts engines down and exits 0',
    async (signal) => {
      const node = await startNode();
      const rest = await openStream(node.url, 50); // about a second
      process.kill(-node.child.pid!, signal);
      node.child.kill(signal); // and again from a parent that passes signals on, as pnpm start's script does
      await expect.poll(() => node.logLines().some((l) => l.msg.startsWith(`${signal}: draining`))).toBe(true);
      const refused = await fetch(`${node.url}/v1/models`);
      expect(refused.status).toBe(503);
      expect(await rest()).toBe('data: [DONE]');
      expect(await node.exited).toBe(0);
      const messages = node.logLines().map((l) => l.msg);
      expect(messages).toEqual(expect.arrayContaining(['model unloaded', 'engine shut down', 'stopped']));
      expect(messages.filter((m) => /^engine \S+ stopped/.test(m))).toEqual([]);
    },
    20_000,
  );

  it('ends the streams still open with a shutting_down event when the grace is over, or at a second signal', async () => {
    for (const [extra, signals] of [
      [['--shutdown-grace', '1'], 1],
      [[], 2],
    ] as const) {
      const node = await startNode(...extra);
      const rest = await openStream(node.url, 1000); // 20 s
      node.child.kill('SIGTERM');
      if (signals === 2) {
        await expect.poll(() => node.logLines().some((l) => l.msg.startsWith('SIGTERM: draining'))).toBe(true);
        await setTimeout(600); // a signal right after the first is the same one delivered twice
        node.child.kill('SIGTERM');
      }
      // The client learns why its completion stopped short: a last event in the error envelope.
      expect(JSON.parse((await rest()).replace(/^data: /, ''))).toEqual({
        error: { message: expect.any(String), type: 'server_error', code: 'shutting_down' },
      });
      expect(await node.exited).toBe(0);
    }
  }, 30_000);
});
