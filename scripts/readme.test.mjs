import { execFile, spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

// The README's first steps as a newcomer takes them: a clean clone of this repository's committed state (what CI
// checks out; local changes not committed are not in it), the set-up commands, `pnpm start`, each curl it prints,
// then Ctrl-C. The commands are read from the README itself, so the README cannot drift from what works.

const repo = fileURLToPath(new URL('..', import.meta.url));
const readme = readFileSync(join(repo, 'README.md'), 'utf8');
const STEP_LIMIT_MS = 30_000;

/** The shell commands of the first ```bash block under a `## heading`, continuation lines joined. */
function commandsUnder(heading, nth = 0) {
  const section = readme.split(/^## /m).find((part) => part.startsWith(heading));
  const block = [...section.matchAll(/```bash\n([\s\S]*?)```/g)][nth][1];
  return block
    .replace(/\\\n\s*/g, '')
    .split('\n')
    .map((line) => line.replace(/\s+#.*$/, '').trim())
    .filter(Boolean);
}

const exec = promisify(execFile);
let clone;
let node;
let output = '';

async function timed(command) {
  const started = performance.now();
  const { stdout } = await exec('bash', ['-c', command], { cwd: clone, timeout: 300_000, maxBuffer: 64 << 20 });
  return { stdout, ms: performance.now() - started };
}

beforeAll(async () => {
  clone = await mkdtemp(join(tmpdir(), 'llm-node-readme-'));
  await exec('git', ['clone', '--quiet', repo, clone]);
}, 60_000);

afterAll(async () => {
  if (node?.exitCode === null) process.kill(-node.pid, 'SIGKILL');
  await rm(clone, { recursive: true, force: true });
});

describe("the README's commands, as written, in a clean clone", () => {
  it(`sets up within ${STEP_LIMIT_MS / 1000} s`, async () => {
    const commands = commandsUnder('Set up');
    expect(commands).toContain('pnpm install');
    for (const command of commands) {
      const { ms } = await timed(command);
      expect(ms, command).toBeLessThan(STEP_LIMIT_MS);
    }
  }, 300_000);

  it(`starts the node with pnpm start within ${STEP_LIMIT_MS / 1000} s, building first, and prints the curl commands of the README`, async () => {
    expect(commandsUnder('Run the node')).toEqual(['pnpm start']);
    // A process group of its own, as a terminal gives a job: Ctrl-C reaches pnpm, the shell and the node.
    node = spawn('bash', ['-c', 'pnpm start'], { cwd: clone, detached: true, stdio: ['ignore', 'pipe', 'pipe'] });
    node.stdout.on('data', (d) => (output += d));
    node.stderr.on('data', (d) => (output += d));
    const started = performance.now();
    await expect.poll(() => output.includes('Stop with Ctrl+C.') || node.exitCode !== null, { timeout: 280_000, interval: 200 }).toBe(true);
    expect(node.exitCode, output).toBeNull();
    const ms = performance.now() - started;
    console.log(`pnpm start in a clean clone: serving after ${(ms / 1000).toFixed(1)} s (a first start builds what the node needs)`);
    expect(ms).toBeLessThan(STEP_LIMIT_MS);
    const printed = output.slice(output.indexOf('Try it:')).replace(/\\\n\s*/g, '');
    for (const command of commandsUnder('Run the node', 1)) expect(printed).toContain(command);
  }, 300_000);

  it.each(commandsUnder('Run the node', 1))(`answers, within ${STEP_LIMIT_MS / 1000} s: %s`, async (command) => {
    const { stdout, ms } = await timed(`curl --silent --show-error --fail-with-body --max-time 30 ${command.slice('curl '.length)}`);
    expect(ms).toBeLessThan(STEP_LIMIT_MS);
    if (command.includes('"stream": true')) {
      expect(stdout.trimEnd().endsWith('data: [DONE]')).toBe(true);
    } else {
      expect(JSON.parse(stdout)).not.toHaveProperty('error');
    }
  });

  it('stops on Ctrl-C after a clean stop, pnpm exiting 0 without a word of its own', async () => {
    const exited = new Promise((resolve) => node.on('exit', (code, signal) => resolve({ code, signal })));
    process.kill(-node.pid, 'SIGINT');
    expect(await exited).toEqual({ code: 0, signal: null });
    expect(output).toMatch(/stopped/);
    expect(output).not.toContain('ELIFECYCLE');
  }, 60_000);
});
