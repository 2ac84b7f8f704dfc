import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { readdirSync, readFileSync } from 'node:fs';
import { createServer, type Server } from 'node:net';
import { getPriority } from 'node:os';
import { setTimeout as delay } from 'node:timers/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { EngineHost, hostEnvironment } from './engine-host.js';
import type { EngineHostOptions } from './engine-host.js';
import { buildTestPlugin } from './testing/index.js';
import type { Generation, LoadProgress } from './types.js';

// The plugin in a process of its own: the faulty test plugin's faults end its host, never this process.

let echo: string;
let faulty: string;
beforeAll(async () => {
  [echo, faulty] = await Promise.all([buildTestPlugin('echo'), buildTestPlugin('faulty')]);
}, 120_000);

const hosts: EngineHost[] = [];
afterAll(() => Promise.all(hosts.map((host) => host.close())));

async function start(plugin: string, options: EngineHostOptions = {}): Promise<EngineHost> {
  const host = await EngineHost.start(plugin, options);
  hosts.push(host);
  await host.init({ gpuBackend: 'cpu', pluginDir: '/' });
  await host.loadModel('m', { path: plugin, format: 'gguf' });
  return host;
}

/** How a crash reads: a signal where there are signals, an exception status on Windows. */
function killedBy(signal: string): RegExp {
  return process.platform === 'win32' ? /exited with status/ : new RegExp(`killed by ${signal}`);
}

/** This process's engine host processes, by pid (Linux; elsewhere none). */
function hostProcesses(): number[] {
  if (process.platform !== 'linux') return [];
  return readdirSync('/proc')
    .filter((entry) => /^\d+$/.test(entry))
    .filter((pid) => {
      try {
        const parent = Number(readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]!.split(' ')[1]);
        return parent === process.pid && readFileSync(`/proc/${pid}/cmdline`, 'utf8').includes('host-main');
      } catch {
        return false; // ended meanwhile
      }
    })
    .map(Number);
}

async function text(generation: Generation): Promise<string> {
  let all = '';
  for await (const chunk of generation) all += chunk.text;
  return all;
}

describe('an engine in a host process', () => {
  it('opens, loads and streams as the plugin in this process does', async () => {
    const host = await start(echo, { expectedId: 'echo' });
    expect(host.info).toMatchObject({ id: 'echo', threadSafe: true });
    expect(host.capabilities).toContain('generate_stream');
    const generation = host.generate({ modelId: 'm', prompt: 'Hello big world' });
    expect(await text(generation)).toBe('Hello big world');
    await expect(generation.result).resolves.toEqual({ finishReason: 'stop', promptTokens: 3, completionTokens: 3 });
    await expect(host.vramUsed()).resolves.toBeGreaterThan(0);
    await expect(host.modelStats('m')).resolves.toMatchObject({ running: 0, kvCellsUsed: 0 });
  });

  it("passes the plugin's load progress on while the load runs, in order", async () => {
    const slowLoad = await buildTestPlugin('echo', { defines: { ECHO_LOAD_DELAY_US: '200000' } });
    const host = await EngineHost.start(slowLoad);
    hosts.push(host);
    await host.init({ gpuBackend: 'cpu', pluginDir: '/' });
    const heard: LoadProgress[] = [];
    await host.loadModel('m', { path: slowLoad, format: 'gguf' }, (progress) => heard.push(progress));
    // The last report may cross the load's reply and be dropped: the reply says the rest.
    expect(heard.slice(0, 4)).toEqual([0, 0.25, 0.5, 0.75].map((fraction) => ({ phase: 'weights', fraction })));
    await host.loadModel('n', { path: slowLoad, format: 'gguf' }); // no listener: nothing is sent for it
  });

  it('opens its plugin in the host process started ahead, then in new ones', async () => {
    const before = hostProcesses();
    EngineHost.prestart();
    const ahead = hostProcesses().filter((pid) => !before.includes(pid));
    const first = await start(echo, { expectedId: 'echo' });
    if (process.platform === 'linux') expect(ahead).toEqual([first.pid]);
    const second = await start(echo, { expectedId: 'echo' });
    expect(await text(first.generate({ modelId: 'm', prompt: 'ahead' }))).toBe('ahead');
    expect(await text(second.generate({ modelId: 'm', prompt: 'after' }))).toBe('after');
  });

  it('lets a program that started a host process ahead and never used it exit at once', async () => {
    const index = new URL('../dist/index.js', import.meta.url).href;
    const program = spawn(process.execPath, ['--input-type=module', '-e', `(await import('${index}')).EngineHost.prestart()`]);
    const exit = await Promise.race([once(program, 'exit'), delay(10_000, 'still running')]);
    program.kill();
    expect(exit).toEqual([0, null]);
  });

  it.runIf(process.platform === 'linux')("asks glibc's malloc for huge pages in the host process", async () => {
    const host = await start(echo);
    const environment = readFileSync(`/proc/${host.pid}/environ`, 'utf8').split('\0');
    // Tunables the operator set come first; glibc rewrites the variable in place as it reads it, so only the
    // presence of the huge-page one is certain here.
    expect(environment.find((entry) => entry.startsWith('GLIBC_TUNABLES='))).toMatch(/^GLIBC_TUNABLES=(.*:)?glibc\.malloc\.hugetlb=/);
  });

  // Windows has priority classes, not levels: +5 stays in the normal class.
  it.runIf(process.platform !== 'win32')(
    "runs the host 5 nice levels below the node, so that the node's thread gets a core before the plugin's",
    async () => {
      const host = await start(echo);
      expect(getPriority(host.pid)).toBe(Math.min(19, getPriority() + 5));
    },
  );

  it("adds the malloc tunables to the operator's GLIBC_TUNABLES, and keeps the operator's own values for them", () => {
    const ours = 'glibc.malloc.hugetlb=1:glibc.malloc.arena_max=1';
    expect(hostEnvironment({ PATH: '/bin' })).toEqual({ PATH: '/bin', GLIBC_TUNABLES: ours });
    expect(hostEnvironment({ GLIBC_TUNABLES: 'glibc.rtld.nns=2' }).GLIBC_TUNABLES).toBe(`glibc.rtld.nns=2:${ours}`);
    expect(hostEnvironment({ GLIBC_TUNABLES: 'glibc.malloc.hugetlb=0' }).GLIBC_TUNABLES).toBe(
      'glibc.malloc.hugetlb=0:glibc.malloc.arena_max=1',
    );
  });

  it('refuses a plugin that reports another id, as openEngine does, and leaves no host behind', async () => {
    await expect(EngineHost.start(echo, { expectedId: 'other' })).rejects.toMatchObject({ code: 'id_mismatch' });
  });

  it.each([
    ['segfault', killedBy('SIGSEGV')],
    ['abort', killedBy('SIGABRT')],
    ['exit', /exited with status 3/],
    ['bad-pointer', killedBy('SIGSEGV')],
    ['huge-length', /killed by SIG(SEGV|BUS|ABRT)|exited with status/],
  ])('fails what is in flight with engine_crashed when the plugin does "%s"', async (fault, how) => {
    const host = await start(faulty);
    const bystander = host.generate({ modelId: 'm', prompt: 'hang-polling' }); // in flight until the host dies
    const generation = host.generate({ modelId: 'm', prompt: fault });
    await expect(text(generation)).rejects.toMatchObject({ code: 'engine_crashed', message: expect.stringMatching(how) });
    await expect(bystander.result).rejects.toMatchObject({ code: 'engine_crashed' });
    await expect(host.exited).resolves.toMatchObject({ code: 'engine_crashed' });
    await expect(host.vramUsed()).rejects.toMatchObject({ code: 'engine_crashed' });
    await expect(host.generate({ modelId: 'm', prompt: 'fine' }).result).rejects.toMatchObject({ code: 'engine_crashed' });
  });

  it('kills a host whose generation makes no progress at all, with engine_timeout', async () => {
    const host = await start(faulty, { timeouts: { stallMs: 300 } });
    const started = Date.now();
    await expect(text(host.generate({ modelId: 'm', prompt: 'hang' }))).rejects.toMatchObject({
      code: 'engine_timeout',
      message: expect.stringContaining('no progress'),
    });
    expect(Date.now() - started).toBeLessThan(5_000);
  });

  it('keeps a generation that polls the callback, and kills the host when it ignores a cancel', async () => {
    const host = await start(faulty, { timeouts: { stallMs: 300, cancelMs: 300 } });
    const generation = host.generate({ modelId: 'm', prompt: 'hang-polling' });
    await new Promise((resolve) => setTimeout(resolve, 800)); // polling is progress: no stall
    expect(await Promise.race([host.exited, new Promise((resolve) => setTimeout(() => resolve('running'), 10))])).toBe('running');
    await generation.return!();
    await expect(generation.result).rejects.toMatchObject({
      code: 'engine_timeout',
      message: expect.stringContaining('cancelled generation'),
    });
  });

  it('survives a callback after return by losing only its host', async () => {
    const host = await start(faulty);
    const generation = host.generate({ modelId: 'm', prompt: 'late-callback' });
    await generation.result.catch(() => undefined);
    const exit = await Promise.race([host.exited, new Promise((resolve) => setTimeout(() => resolve(null), 2_000))]);
    // Whether the late call lands on freed memory is up to the allocator; if it kills anything, it is the host.
    if (exit !== null) expect(exit).toMatchObject({ code: 'engine_crashed' });
  });

  it('kills a host whose engine_init hangs, and one whose engine_shutdown hangs on close', async () => {
    const hangsInInit = await buildTestPlugin('faulty', { defines: { INIT_FAULT: 1 } });
    const host = await EngineHost.start(hangsInInit, { timeouts: { initMs: 300 } });
    await expect(host.init({ gpuBackend: 'cpu', pluginDir: '/' })).rejects.toMatchObject({
      code: 'engine_timeout',
      message: expect.stringContaining('engine_init'),
    });

    const hangsInShutdown = await buildTestPlugin('faulty', { defines: { SHUTDOWN_FAULT: 1 } });
    const other = await EngineHost.start(hangsInShutdown, { timeouts: { callMs: 300 } });
    await other.init({ gpuBackend: 'cpu', pluginDir: '/' });
    await other.close();
    await expect(other.exited).resolves.toMatchObject({ code: 'engine_timeout' });
  });

  it('reports a plugin that calls exit(0) in engine_init as a crash, not a clean exit', async () => {
    const exits = await buildTestPlugin('faulty', { defines: { INIT_FAULT: 2 } });
    const host = await EngineHost.start(exits);
    await expect(host.init({ gpuBackend: 'cpu', pluginDir: '/' })).rejects.toMatchObject({
      code: 'engine_crashed',
      message: expect.stringContaining('exited with status 0'),
    });
  });

  it("hands the plugin's output lines to the owner, a flood included", async () => {
    const lines: string[] = [];
    const host = await start(faulty, { onOutput: (line, stream) => stream === 'stdout' && lines.push(line) });
    expect(await text(host.generate({ modelId: 'm', prompt: 'spam' }))).toBe('ok');
    await expect.poll(() => lines.length, { timeout: 10_000 }).toBe(100_000);
    expect(lines[99_999]).toBe('faulty: line 99999 of a flood on stdout');
  });

  it('reports a plugin that answers a failure with a bad engine_get_last_error pointer as a crash', async () => {
    const badLastError = await buildTestPlugin('faulty', { defines: { BAD_LAST_ERROR: 1 } });
    const host = await start(badLastError);
    await expect(text(host.generate({ modelId: 'm', prompt: 'fail' }))).rejects.toMatchObject({ code: 'engine_crashed' });
  });
});

describe.skipIf(process.platform !== 'linux')('the network, denied to plugins', () => {
  let listener: Server;
  let port: number;
  let connections = 0;
  beforeAll(async () => {
    listener = createServer((socket) => {
      connections++;
      socket.destroy();
    });
    await new Promise<void>((resolve) => listener.listen(0, '127.0.0.1', resolve));
    port = (listener.address() as { port: number }).port;
    process.env.FAULTY_CONNECT_PORT = String(port);
  });
  afterAll(() => {
    delete process.env.FAULTY_CONNECT_PORT;
    return new Promise<void>((resolve) => listener.close(() => resolve()));
  });

  it("refuses a plugin's socket with EPERM, in engine_init and in generation, and reports each attempt", async () => {
    const denied: number[] = [];
    const output: string[] = [];
    const connectsInInit = await buildTestPlugin('faulty', { defines: { INIT_FAULT: 3 } });
    const host = await start(connectsInInit, { onNetworkDenied: (family) => denied.push(family), onOutput: (line) => output.push(line) });
    expect(host.network).toEqual({ enforced: true, how: expect.stringContaining('seccomp') });
    expect(await text(host.generate({ modelId: 'm', prompt: 'connect' }))).toBe('refused 1'); // EPERM
    await expect.poll(() => denied).toEqual([2, 2]); // AF_INET, twice
    expect(connections).toBe(0);
    expect(output).not.toContain('faulty: connected during engine_init');
  });

  it('lets an engine the operator allowed use the network', async () => {
    const host = await start(faulty, { allowNetwork: true });
    expect(host.network.enforced).toBe(false);
    expect(await text(host.generate({ modelId: 'm', prompt: 'connect' }))).toBe('connected');
    expect(connections).toBe(1);
  });
});
