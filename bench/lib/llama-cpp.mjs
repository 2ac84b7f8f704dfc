// What the llama.cpp comparisons (bench/cpu, bench/gpu) share: llama.cpp's own tools built from the same
// source bundle as the engine, servers started and awaited, and the shared load client's figures.
import { execFileSync, spawn } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

export const repo = fileURLToPath(new URL('../../', import.meta.url));
export const cacheDir = join(repo, '.cache', 'bench');

/** The llama.cpp source node-llama-cpp ships (the engine's headers come from the same bundle), cloned once. */
export function llamaSource() {
  // A devDependency of engines/llama_cpp; its package.json is not in its `exports`, so look for the folder.
  const require = createRequire(join(repo, 'engines/llama_cpp/package.json'));
  const packageDir = require.resolve
    .paths('node-llama-cpp')
    .map((dir) => join(dir, 'node-llama-cpp'))
    .find(existsSync);
  const llamaDir = join(packageDir, 'llama');
  const { release } = JSON.parse(readFileSync(join(llamaDir, 'binariesGithubRelease.json'), 'utf8'));
  const target = join(cacheDir, 'llama.cpp');
  const marker = join(target, '.release');
  if (!existsSync(marker) || readFileSync(marker, 'utf8') !== release) {
    execFileSync('rm', ['-rf', target]);
    execFileSync('git', ['clone', '--quiet', '-c', 'advice.detachedHead=false', join(llamaDir, 'gitRelease.bundle'), target]);
    writeFileSync(marker, release);
  }
  return { dir: target, release };
}

/**
 * Builds llama-bench and llama-server into `.cache/bench/<name>` with `cmakeFlags`, unless a build from the
 * same release and flags is there already (the first CPU build takes about 15 minutes on 2 cores).
 */
export function buildLlamaTools(name, cmakeFlags) {
  const source = llamaSource();
  const buildDir = join(cacheDir, name);
  const stamp = join(buildDir, '.built');
  const wanted = JSON.stringify({ release: source.release, cmakeFlags });
  const bin = (tool) => join(buildDir, 'bin', tool);
  if (existsSync(stamp) && readFileSync(stamp, 'utf8') === wanted && existsSync(bin('llama-server'))) return bin;
  mkdirSync(buildDir, { recursive: true });
  const started = Date.now();
  log(`building llama-bench and llama-server (${name}) from llama.cpp ${source.release}…`);
  execFileSync(
    'cmake',
    [
      '-S',
      source.dir,
      '-B',
      buildDir,
      '-G',
      'Ninja',
      '-DCMAKE_BUILD_TYPE=Release',
      // Nothing may be downloaded: no web UI from the network, no TLS client, no tests.
      '-DLLAMA_OPENSSL=OFF',
      '-DLLAMA_USE_PREBUILT_UI=OFF',
      '-DLLAMA_BUILD_UI=OFF',
      '-DLLAMA_BUILD_TESTS=OFF',
      '-DLLAMA_BUILD_EXAMPLES=OFF',
      ...cmakeFlags,
    ],
    { stdio: ['ignore', 'ignore', 'inherit'] },
  );
  execFileSync('cmake', ['--build', buildDir, '--target', 'llama-server', 'llama-bench'], { stdio: ['ignore', 'ignore', 'inherit'] });
  writeFileSync(stamp, wanted);
  log(`built in ${((Date.now() - started) / 60000).toFixed(1)} min`);
  return bin;
}

/**
 * Whether the OpenAI-compatible server at `base` answers a one-token completion of `model`: the first request a
 * client of a server started with a model gets answered (llama-server says 503 while it loads; a request to
 * llm-node joins the load in progress).
 */
export async function answersCompletion(base, model) {
  const response = await fetch(`${base}/v1/completions`, {
    method: 'POST',
    headers: { 'Content-Type': 'application/json' },
    body: JSON.stringify({ model, prompt: 'Hi', max_tokens: 1 }),
  });
  await response.arrayBuffer();
  return response.ok;
}

/** llama-bench's mean tokens/s for each test (pp<N>, tg<N>). */
export function llamaBench(binary, model, args) {
  const out = execFileSync(binary, ['-m', model, '-o', 'json', ...args], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] });
  const figures = {};
  for (const r of JSON.parse(out)) figures[r.n_gen > 0 ? `tg${r.n_gen}` : `pp${r.n_prompt}`] = r.avg_ts;
  return figures;
}

/**
 * Starts a server process and resolves once `ready()` holds (it may throw while the server is not listening yet);
 * `ms` is the time that took.
 */
export async function startServer(command, args, ready, env = process.env) {
  const started = performance.now();
  const child = spawn(command, args, { stdio: ['ignore', 'ignore', 'pipe'], env });
  let stderr = '';
  child.stderr.on('data', (d) => (stderr = (stderr + d).slice(-4000)));
  const exited = new Promise((resolve) => child.on('exit', resolve));
  for (;;) {
    if (child.exitCode !== null) throw new Error(`${command} exited ${child.exitCode}:\n${stderr}`);
    try {
      if (await ready()) break;
    } catch {
      // not listening yet
    }
    await new Promise((r) => setTimeout(r, 20));
  }
  return {
    ms: performance.now() - started,
    async stop() {
      child.kill('SIGTERM');
      await exited;
    },
  };
}

// The shared load client lives beside the checkout (../shared/bench); OAI_LOAD names it elsewhere. It needs
// Python's aiohttp: on Debian, apt-get install python3-aiohttp and /usr/bin/python3.
const client = process.env.OAI_LOAD ?? join(repo, '..', 'shared', 'bench', 'oai_load.py');

/** Fails early, with the fix, when the load client or its Python cannot run. */
export function checkLoadClient() {
  if (!existsSync(client)) throw new Error(`load client not found at ${client}; set OAI_LOAD to its path`);
  try {
    execFileSync('/usr/bin/python3', ['-c', 'import aiohttp'], { stdio: 'ignore' });
  } catch {
    throw new Error('the load client needs aiohttp: apt-get install python3-aiohttp');
  }
}

/** Runs ../shared/bench/oai_load.py (the one load client for every server comparison) and parses its TSV. */
export function oaiLoad(baseUrl, model, { tokens, concurrency, temperature }) {
  const out = execFileSync('/usr/bin/python3', [client, baseUrl, model, String(tokens), ...concurrency.map(String)], {
    encoding: 'utf8',
    env: { ...process.env, TEMPERATURE: String(temperature) },
  });
  return Object.fromEntries(
    out
      .trim()
      .split('\n')
      .map((line) => line.split('\t'))
      .map(([k, v]) => [k, Number(v)]),
  );
}

export function median(values) {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)];
}

export function log(message) {
  process.stderr.write(`[bench] ${message}\n`);
}
