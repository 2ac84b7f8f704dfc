import { mkdtemp, readdir, readFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, test } from 'vitest';
import { openEngine } from '../index.js';
import { buildTestPlugin, installTestPlugin, libraryFileName } from './index.js';

describe('test plugins for other packages', () => {
  test('builds a plugin once per source and options, even when asked in parallel', async () => {
    const [a, b] = await Promise.all([buildTestPlugin('legacy'), buildTestPlugin('legacy')]);
    expect(a).toBe(b);
    expect(await buildTestPlugin('legacy')).toBe(a);
    expect(await buildTestPlugin('legacy', { defines: { UNUSED: 1 } })).not.toBe(a);
  });

  test('lays out a plugin with a truthful manifest in <engines>/<id>/<backend>/', async () => {
    const enginesDir = await mkdtemp(join(tmpdir(), 'llm-node-engines-'));
    const dir = await installTestPlugin({ enginesDir, plugin: await buildTestPlugin('echo') });
    expect(dir).toBe(join(enginesDir, 'echo', 'cpu'));
    expect((await readdir(dir)).sort()).toEqual([libraryFileName('echo'), 'manifest.json'].sort());
    expect(JSON.parse(await readFile(join(dir, 'manifest.json'), 'utf8'))).toEqual({
      id: 'echo',
      version: '1.0.0',
      abi_version: '1',
      gpu_backend: 'cpu',
      architectures: ['llama'],
      formats: ['gguf'],
      binary: libraryFileName('echo'),
    });
    const engine = openEngine(join(dir, libraryFileName('echo')), { expectedId: 'echo' });
    await engine.close();
  });

  test('takes overrides for bad-input cases, and names a plugin it cannot open after its file', async () => {
    const enginesDir = await mkdtemp(join(tmpdir(), 'llm-node-engines-'));
    const dir = await installTestPlugin({
      enginesDir,
      plugin: await buildTestPlugin('abi2'),
      backend: 'metal',
      manifest: { abi_version: '2', formats: undefined, extra: true },
    });
    expect(dir).toBe(join(enginesDir, 'abi2', 'metal'));
    const manifest = JSON.parse(await readFile(join(dir, 'manifest.json'), 'utf8'));
    expect(manifest).toMatchObject({ id: 'abi2', abi_version: '2', gpu_backend: 'metal', extra: true });
    expect(manifest).not.toHaveProperty('formats');
  });
});
