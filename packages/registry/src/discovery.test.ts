import { mkdir, mkdtemp, readFile, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import { openEngine } from '@llm-node/abi-native';
import type { EngineInitConfig } from '@llm-node/abi-native';
import { buildTestPlugin, installTestPlugin, libraryFileName } from '@llm-node/abi-native/testing';
import type { TestPluginName } from '@llm-node/abi-native/testing';
import { afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { Registry } from './registry.js';
import type { OpenEngine } from './discovery.js';
import { cpuGpu, fixedSampler } from './testing/fake-engine.js';

// The bad-input corpus for plugin folders, driven through the real binding with real compiled plugins:
// each case is a layout an operator or a broken build could leave in the engines folder, and the outcome
// and reason the node reports for every folder in it. None may throw or crash the process.

const plugins = {} as Record<TestPluginName, string>;
beforeAll(async () => {
  for (const name of ['minimal', 'echo', 'abi2', 'missing_symbol', 'failing', 'legacy'] as const) {
    plugins[name] = await buildTestPlugin(name);
  }
}, 120_000);

let root: string;
let engines: string;
beforeEach(async () => {
  root = await mkdtemp(join(tmpdir(), 'registry-discovery-'));
  engines = join(root, 'engines');
  await mkdir(engines);
});
afterEach(async () => {
  await rm(root, { recursive: true, force: true });
});

const install = (plugin: TestPluginName, options: { id?: string; backend?: string; manifest?: Record<string, unknown> } = {}) =>
  installTestPlugin({ enginesDir: engines, plugin: plugins[plugin], ...options });

async function editManifest(dir: string, changes: Record<string, unknown>): Promise<void> {
  const file = join(dir, 'manifest.json');
  await writeFile(file, JSON.stringify({ ...JSON.parse(await readFile(file, 'utf8')), ...changes }));
}

/** The failing plugin refuses engine_init for any device but 0: the real binding, asked for device 1. */
const initOnDevice1: OpenEngine = async (path, options) => {
  const engine = openEngine(path, options);
  const init = engine.init.bind(engine);
  return Object.assign(engine, { init: (config: EngineInitConfig) => init({ ...config, deviceIndex: 1 }) });
};

interface Outcome {
  path: string;
  status: string;
  code?: string;
  message?: string | RegExp;
  warning?: string | RegExp;
}

const minimalLibrary = libraryFileName('minimal');

const corpus: Array<{ name: string; arrange: () => Promise<unknown>; outcomes: Outcome[]; openEngine?: OpenEngine }> = [
  {
    name: "the plugin guide's minimal plugin",
    arrange: () => install('minimal'),
    outcomes: [{ path: 'my_engine/cpu', status: 'loaded' }],
  },
  {
    name: 'a plugin built for another backend',
    arrange: () => install('minimal', { backend: 'metal' }),
    outcomes: [
      { path: 'my_engine/metal', status: 'skipped', code: 'backend_not_active', message: 'Built for metal; the active backend is cpu' },
    ],
  },
  {
    name: 'a manifest declaring ABI 2',
    arrange: () => install('minimal', { manifest: { abi_version: '2' } }),
    outcomes: [{ path: 'my_engine/cpu', status: 'rejected', code: 'abi_mismatch', message: 'ABI version mismatch: expected 1, got 2' }],
  },
  {
    name: 'a binary reporting ABI 2 under a manifest that claims 1',
    arrange: () => install('abi2', { id: 'abi2' }),
    outcomes: [{ path: 'abi2/cpu', status: 'rejected', code: 'abi_mismatch', message: 'ABI version mismatch: expected 1, got 2' }],
  },
  {
    name: 'a binary missing a required entry point',
    arrange: () => install('missing_symbol', { id: 'missing_symbol' }),
    outcomes: [{ path: 'missing_symbol/cpu', status: 'rejected', code: 'missing_symbol', message: /engine_generate/ }],
  },
  {
    name: 'a binary whose engine id differs from its manifest',
    arrange: () => install('minimal', { id: 'other_engine' }),
    outcomes: [
      { path: 'other_engine/cpu', status: 'rejected', code: 'id_mismatch', message: /manifest says 'other_engine'.*reports 'my_engine'/ },
    ],
  },
  {
    name: 'a plugin whose engine_init fails',
    arrange: () => install('failing'),
    openEngine: initOnDevice1,
    outcomes: [
      {
        path: 'failing/cpu',
        status: 'rejected',
        code: 'init_failed',
        message: "Engine 'failing' failed to initialise: device 1 does not exist: this engine drives only device 0",
      },
    ],
  },
  {
    name: 'a binary that is not a shared library',
    arrange: async () => writeFile(join(await install('minimal'), minimalLibrary), 'MZ? no, just text'),
    outcomes: [{ path: 'my_engine/cpu', status: 'rejected', code: 'open_failed' }],
  },
  {
    name: 'a binary that is missing',
    arrange: () => install('minimal', { manifest: { binary: 'libabsent.so' } }),
    outcomes: [
      {
        path: 'my_engine/cpu',
        status: 'rejected',
        code: 'binary_not_found',
        message: /^Binary 'libabsent.so' not found in .*my_engine\/cpu \(ENOENT/,
      },
    ],
  },
  {
    name: 'a binary that is a folder',
    arrange: async () => mkdir(join(await install('minimal', { manifest: { binary: 'libdir.so' } }), 'libdir.so')),
    outcomes: [{ path: 'my_engine/cpu', status: 'rejected', code: 'binary_not_a_file', message: /is not a regular file$/ }],
  },
  {
    name: 'a binary symlinked from outside its folder',
    arrange: async () => symlink(plugins.minimal, join(await install('minimal', { manifest: { binary: 'liblinked.so' } }), 'liblinked.so')),
    outcomes: [{ path: 'my_engine/cpu', status: 'rejected', code: 'binary_outside_folder', message: /outside the plugin folder$/ }],
  },
  {
    name: 'two plugins with one id (the first in sorted order wins)',
    arrange: async () => {
      await install('minimal', { id: 'a_first', manifest: { id: 'my_engine' } });
      await install('minimal', { id: 'b_second', manifest: { id: 'my_engine' } });
    },
    outcomes: [
      { path: 'a_first/cpu', status: 'loaded', warning: "Engine folder 'a_first' holds engine 'my_engine'; name the folder after the id" },
      {
        path: 'b_second/cpu',
        status: 'rejected',
        code: 'id_conflict',
        message: /^Engine id 'my_engine' at .*b_second\/cpu is already taken by .*a_first\/cpu$/,
      },
    ],
  },
  {
    name: 'a backend folder named unlike its manifest',
    arrange: () => install('minimal', { backend: 'cuda', manifest: { gpu_backend: 'cpu' } }),
    outcomes: [
      {
        path: 'my_engine/cuda',
        status: 'rejected',
        code: 'backend_folder_mismatch',
        message: /holds a plugin for gpu_backend 'cpu' in a folder named 'cuda'; move it to my_engine\/cpu\/$/,
      },
    ],
  },
  {
    name: 'a manifest in a folder that is no backend',
    arrange: () => install('minimal', { backend: 'gpu', manifest: { gpu_backend: 'cpu' } }),
    outcomes: [{ path: 'my_engine/gpu', status: 'rejected', code: 'backend_folder_mismatch' }],
  },
  {
    name: 'no manifest.json in a backend folder',
    arrange: () => mkdir(join(engines, 'my_engine', 'cpu'), { recursive: true }),
    outcomes: [{ path: 'my_engine/cpu', status: 'rejected', code: 'invalid_manifest', message: /manifest\.json/ }],
  },
  {
    name: 'a manifest that is not JSON',
    arrange: async () => writeFile(join(await install('minimal'), 'manifest.json'), '{"id": "my_engine",'),
    outcomes: [{ path: 'my_engine/cpu', status: 'rejected', code: 'invalid_manifest', message: /is not valid JSON/ }],
  },
  {
    name: 'a manifest with an invalid field',
    arrange: async () => editManifest(await install('minimal'), { architectures: [] }),
    outcomes: [{ path: 'my_engine/cpu', status: 'rejected', code: 'invalid_manifest', message: /architectures/ }],
  },
  {
    name: 'a manifest whose binary escapes the folder',
    arrange: async () => editManifest(await install('minimal'), { binary: `../../${minimalLibrary}` }),
    outcomes: [{ path: 'my_engine/cpu', status: 'rejected', code: 'invalid_manifest', message: /binary/ }],
  },
  {
    name: 'a file where an engine folder should be',
    arrange: () => writeFile(join(engines, 'README.md'), '# engines'),
    outcomes: [{ path: 'README.md', status: 'rejected', code: 'not_a_directory', message: /is a file, not a folder/ }],
  },
  {
    name: 'a file where a backend folder should be',
    arrange: async () => {
      await mkdir(join(engines, 'my_engine'));
      await writeFile(join(engines, 'my_engine', 'cpu'), '');
    },
    outcomes: [{ path: 'my_engine/cpu', status: 'rejected', code: 'not_a_directory' }],
  },
  {
    name: 'an empty engine folder',
    arrange: () => mkdir(join(engines, 'my_engine')),
    outcomes: [
      {
        path: 'my_engine',
        status: 'rejected',
        code: 'no_plugin',
        message: /expected a folder named for a GPU backend \(cuda, metal, directml, cpu\)/,
      },
    ],
  },
  {
    name: 'an engine folder holding only sources and build trees',
    arrange: async () => {
      await mkdir(join(engines, 'my_engine', 'src'), { recursive: true });
      await mkdir(join(engines, 'my_engine', 'build'));
      await writeFile(join(engines, 'my_engine', 'package.json'), '{}');
    },
    outcomes: [{ path: 'my_engine', status: 'rejected', code: 'no_plugin' }],
  },
  {
    name: 'sources beside a built plugin (not reported)',
    arrange: async () => {
      await install('minimal');
      await mkdir(join(engines, 'my_engine', 'src'));
      await writeFile(join(engines, 'my_engine', 'CMakeLists.txt'), '');
    },
    outcomes: [{ path: 'my_engine/cpu', status: 'loaded' }],
  },
  {
    name: 'a symbolic link loop',
    arrange: () => symlink(join(engines, 'loop'), join(engines, 'loop')),
    outcomes: [{ path: 'loop', status: 'rejected', code: 'unreadable', message: /ELOOP \(a symbolic link loop\)/ }],
  },
  {
    name: 'a symbolic link loop as a backend folder',
    arrange: async () => {
      await mkdir(join(engines, 'my_engine'));
      await symlink(join(engines, 'my_engine', 'cpu'), join(engines, 'my_engine', 'cpu'));
    },
    outcomes: [{ path: 'my_engine/cpu', status: 'rejected', code: 'unreadable', message: /ELOOP/ }],
  },
  {
    name: 'a dangling symbolic link',
    arrange: () => symlink(join(root, 'nowhere'), join(engines, 'gone')),
    outcomes: [{ path: 'gone', status: 'rejected', code: 'unreadable', message: /ENOENT \(missing, or a dangling symbolic link\)/ }],
  },
  {
    name: 'hidden entries (.DS_Store, .git)',
    arrange: async () => {
      await writeFile(join(engines, '.DS_Store'), '');
      await mkdir(join(engines, '.git'));
    },
    outcomes: [],
  },
  {
    name: 'a plugin folder reached through a symbolic link',
    arrange: async () => {
      const elsewhere = join(root, 'elsewhere');
      await installTestPlugin({ enginesDir: elsewhere, plugin: plugins.minimal });
      await mkdir(join(engines, 'my_engine'));
      await symlink(join(elsewhere, 'my_engine', 'cpu'), join(engines, 'my_engine', 'cpu'));
    },
    outcomes: [{ path: 'my_engine/cpu', status: 'loaded' }],
  },
];

describe('plugin discovery: the bad-input corpus', () => {
  it.each(corpus)('$name', async ({ arrange, outcomes, openEngine: opener }) => {
    await arrange();
    const registry = await Registry.create({
      enginesDirs: [engines],
      modelsDir: root,
      gpu: cpuGpu(),
      sampler: fixedSampler(null),
      ...(opener ? { openEngine: opener } : {}),
    });
    try {
      const seen = registry.engines.map((e) => ({
        path: relative(engines, e.path),
        status: e.status,
        code: e.error?.code,
        message: e.error?.message,
        warnings: e.warnings,
      }));
      expect(seen.map((s) => [s.path, s.status])).toEqual(outcomes.map((o) => [o.path, o.status]));
      outcomes.forEach((expected, i) => {
        const actual = seen[i]!;
        expect(actual.code).toBe(expected.code);
        if (expected.status === 'loaded') expect(actual.message).toBeUndefined();
        if (typeof expected.message === 'string') expect(actual.message).toBe(expected.message);
        if (expected.message instanceof RegExp) expect(actual.message).toMatch(expected.message);
        if (expected.warning !== undefined) expect(actual.warnings).toContainEqual(expected.warning);
      });
      for (const record of registry.engines) {
        if (record.error) expect(record.error.type).toBe(record.status === 'skipped' ? 'unsupported_error' : 'plugin_error');
      }
    } finally {
      await registry.close();
    }
  });
});

describe('plugin discovery', () => {
  it('reports a loaded plugin with its manifest and the capabilities its binary provides', async () => {
    await install('echo', { manifest: { architectures: ['llama', 'mistral'] } });
    await install('legacy');
    const registry = await Registry.create({ enginesDirs: [engines], modelsDir: root, gpu: cpuGpu(), sampler: fixedSampler(null) });
    try {
      const [echo, legacy] = registry.engines;
      expect(echo).toMatchObject({
        id: 'echo',
        status: 'loaded',
        path: join(engines, 'echo', 'cpu'),
        manifest: { id: 'echo', gpu_backend: 'cpu', architectures: ['llama', 'mistral'], formats: ['gguf'] },
        error: null,
        warnings: [],
      });
      expect([...echo!.capabilities].sort()).toEqual([
        'embed',
        'generate_stream',
        'last_error',
        'model_estimate_vram',
        'model_load',
        'model_stats',
        'thread_safe',
        'vram_used',
      ]);
      expect(legacy).toMatchObject({ id: 'legacy', status: 'loaded', capabilities: [] });
    } finally {
      await registry.close();
    }
  });

  it("reports a manifest's unknown fields as warnings, not errors", async () => {
    await install('minimal', { manifest: { homepage: 'https://example.com' } });
    const registry = await Registry.create({ enginesDirs: [engines], modelsDir: root, gpu: cpuGpu(), sampler: fixedSampler(null) });
    try {
      expect(registry.engines[0]).toMatchObject({ status: 'loaded', warnings: [expect.stringContaining('homepage')] });
    } finally {
      await registry.close();
    }
  });

  it('refuses an engines folder that does not exist, or is a file, with a clear error', async () => {
    const create = (enginesDir: string) =>
      Registry.create({ enginesDirs: [enginesDir], modelsDir: root, gpu: cpuGpu(), sampler: fixedSampler(null) });
    await expect(create(join(root, 'absent'))).rejects.toMatchObject({
      code: 'engines_dir_not_found',
      message: `Engines directory ${join(root, 'absent')} does not exist`,
    });
    await writeFile(join(root, 'file'), '');
    await expect(create(join(root, 'file'))).rejects.toMatchObject({ code: 'engines_dir_not_a_directory' });
  });

  it('searches several engines dirs in order: the first to hold an id keeps it, the others add their own', async () => {
    const packaged = join(root, 'packaged');
    await install('echo');
    await installTestPlugin({ enginesDir: packaged, plugin: plugins.echo });
    await installTestPlugin({ enginesDir: packaged, plugin: plugins.legacy });
    const registry = await Registry.create({
      enginesDirs: [engines, packaged],
      modelsDir: root,
      gpu: cpuGpu(),
      sampler: fixedSampler(null),
    });
    try {
      expect(registry.engines.map((e) => [e.path, e.status, e.error?.code])).toEqual([
        [join(engines, 'echo', 'cpu'), 'loaded', undefined],
        [join(packaged, 'echo', 'cpu'), 'rejected', 'id_conflict'],
        [join(packaged, 'legacy', 'cpu'), 'loaded', undefined],
      ]);
    } finally {
      await registry.close();
    }
  });

  it('opens plugins at once; of two sharing an id the first in order keeps it though it opens last, the other is shut', async () => {
    await install('minimal', { id: 'a_first', manifest: { id: 'my_engine' } });
    await install('minimal', { id: 'b_second', manifest: { id: 'my_engine' } });
    await install('echo');
    const folderOf = (path: string) => relative(engines, path).split(/[\\/]/)[0]!;
    const started: string[] = [];
    let startedWhileTheFirstOpened: string[] = [];
    const closed: string[] = [];
    const firstOpensLast: OpenEngine = async (path, options) => {
      started.push(folderOf(path));
      if (folderOf(path) === 'a_first') {
        await new Promise((resolve) => setTimeout(resolve, 300));
        startedWhileTheFirstOpened = [...started];
      }
      const engine = openEngine(path, options);
      const close = engine.close.bind(engine);
      return Object.assign(engine, {
        close: () => {
          closed.push(folderOf(path));
          return close();
        },
      });
    };
    const registry = await Registry.create({
      enginesDirs: [engines],
      modelsDir: root,
      gpu: cpuGpu(),
      sampler: fixedSampler(null),
      openEngine: firstOpensLast,
    });
    try {
      expect(startedWhileTheFirstOpened).toEqual(['a_first', 'b_second', 'echo']);
      expect(registry.engines.map((e) => [relative(engines, e.path), e.status, e.error?.code])).toEqual([
        [join('a_first', 'cpu'), 'loaded', undefined],
        [join('b_second', 'cpu'), 'rejected', 'id_conflict'],
        [join('echo', 'cpu'), 'loaded', undefined],
      ]);
      expect(closed).toEqual(['b_second']);
    } finally {
      await registry.close();
    }
  });

  it('discovers the whole corpus side by side in sorted order without failing', async () => {
    for (const { arrange } of corpus) {
      await arrange().catch(() => undefined); // cases that collide on a path simply keep the first layout
    }
    const registry = await Registry.create({ enginesDirs: [engines], modelsDir: root, gpu: cpuGpu(), sampler: fixedSampler(null) });
    try {
      const paths = registry.engines.map((e) => relative(engines, e.path));
      expect(paths).toEqual([...paths].sort());
      expect(registry.engines.length).toBeGreaterThan(5);
    } finally {
      await registry.close();
    }
  });
});
