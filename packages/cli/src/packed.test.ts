import { execFile } from 'node:child_process';
import { mkdtemp, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { afterAll, describe, expect, it } from 'vitest';

const run = promisify(execFile);
const packagesDir = fileURLToPath(new URL('../../', import.meta.url));
// The CLI and every package of ours it pulls in, as npm would get them from the registry.
const packed = ['gpu-detect', 'manifest', 'abi-native', 'registry', 'server', 'cli'];

let root: string | undefined;
afterAll(() => root && rm(root, { recursive: true, force: true }));

describe('the published llm-node package', () => {
  it('runs with npx from packed tarballs in a clean prefix', async () => {
    root = await mkdtemp(join(tmpdir(), 'llm-node-packed-'));
    const tarballs = join(root, 'tarballs');
    for (const name of packed) {
      // pnpm pack turns workspace:^ ranges into the versions being packed.
      await run('pnpm', ['pack', '--pack-destination', tarballs], { cwd: join(packagesDir, name) });
    }
    const prefix = join(root, 'prefix');
    const files = (await readdir(tarballs)).map((f) => join(tarballs, f));
    await run('npm', ['install', '--prefix', prefix, '--no-audit', '--no-fund', ...files], { cwd: root });

    const { stdout } = await run('npx', ['--no-install', 'llm-node', '--version'], { cwd: prefix });
    expect(stdout.trim()).toMatch(/^llm-node \d+\.\d+\.\d+ \(engine ABI 1\)$/);
  }, 600_000);
});
