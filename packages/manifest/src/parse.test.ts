import { mkdtemp, mkdir, rm, writeFile, chmod } from 'node:fs/promises';
import { execFileSync } from 'node:child_process';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseManifest, readManifest } from './parse.js';

const FILE = 'engines/llama_cpp/metal/manifest.json';
// The manifest of this package's README (without its $schema).
const README_MANIFEST = `{
  "id": "llama_cpp",
  "version": "1.0.0",
  "abi_version": "1",
  "gpu_backend": "metal",
  "architectures": ["llama", "mistral", "gemma", "phi"],
  "formats": ["gguf"],
  "binary": "libllama_engine.dylib"
}`;

describe('parseManifest', () => {
  it('accepts the manifest of the README', () => {
    expect(parseManifest(README_MANIFEST, FILE)).toEqual({
      ok: true,
      manifest: {
        id: 'llama_cpp',
        version: '1.0.0',
        abi_version: '1',
        gpu_backend: 'metal',
        architectures: ['llama', 'mistral', 'gemma', 'phi'],
        formats: ['gguf'],
        binary: 'libllama_engine.dylib',
      },
      warnings: [],
    });
  });

  it("accepts the plugin guide's manifest for its minimal C plugin, from bytes", () => {
    const myEngine = {
      id: 'my_engine',
      version: '1.0.0',
      abi_version: '1',
      gpu_backend: 'metal',
      architectures: ['custom'],
      formats: ['safetensors'],
      binary: 'libmy_engine.dylib',
    };
    expect(parseManifest(new TextEncoder().encode(JSON.stringify(myEngine)), FILE)).toMatchObject({ ok: true, manifest: myEngine });
  });

  it('keeps the optional fields', () => {
    const full = {
      ...JSON.parse(README_MANIFEST),
      modalities: ['completion', 'embedding'],
      supports_vision: true,
      license: 'MIT',
      $schema: '../schema.json',
    };
    const result = parseManifest(JSON.stringify(full), FILE);
    expect(result.ok && result.manifest).toMatchObject({ modalities: ['completion', 'embedding'], supports_vision: true, license: 'MIT' });
    expect(result.ok && '$schema' in result.manifest).toBe(false);
  });

  it('accepts every backend, semver pre-releases and build metadata, and file names with dots', () => {
    for (const gpu_backend of ['cuda', 'metal', 'directml', 'cpu']) {
      const manifest = {
        ...JSON.parse(README_MANIFEST),
        gpu_backend,
        version: '2.1.0-rc.1+build.5',
        binary: 'llama_engine.v2.dll',
        id: 'llama.cpp-2',
      };
      expect(parseManifest(JSON.stringify(manifest), FILE).ok).toBe(true);
    }
  });

  it('warns about unknown fields instead of refusing them', () => {
    const result = parseManifest(JSON.stringify({ ...JSON.parse(README_MANIFEST), quantizations: ['Q4_K_M'] }), FILE);
    expect(result.ok).toBe(true);
    expect(result.warnings).toEqual([
      `${FILE}: unknown field "quantizations" ignored (known fields: $schema, id, version, abi_version, gpu_backend, architectures, formats, binary, modalities, supports_vision, license)`,
    ]);
    expect(result.ok && 'quantizations' in result.manifest).toBe(false);
  });

  it('names at most ten unknown fields', () => {
    const extra = Object.fromEntries(Array.from({ length: 25 }, (_, i) => [`extra_${i}`, i]));
    const [warning] = parseManifest(JSON.stringify({ ...JSON.parse(README_MANIFEST), ...extra }), FILE).warnings;
    expect(warning).toMatch(/unknown fields "extra_0", .*"extra_9" and 15 more ignored/);
  });

  it("treats a __proto__ field as an unknown field, not as the object's prototype", () => {
    const result = parseManifest(README_MANIFEST.replace('{', '{"__proto__": {"id": "x"},'), FILE);
    expect(result.ok && result.manifest.id).toBe('llama_cpp');
    expect(result.warnings[0]).toMatch(/unknown field "__proto__" ignored/);
  });

  it('accepts a UTF-8 byte order mark with a warning', () => {
    const bytes = new Uint8Array([0xef, 0xbb, 0xbf, ...new TextEncoder().encode(README_MANIFEST)]);
    expect(parseManifest(bytes, FILE)).toMatchObject({
      ok: true,
      warnings: [`${FILE}: starts with a UTF-8 byte order mark (BOM), which was ignored; save it as UTF-8 without BOM`],
    });
    expect(parseManifest(`\uFEFF${README_MANIFEST}`, FILE).ok).toBe(true);
  });

  it("reports every wrong field at once, in the schema's order", () => {
    const result = parseManifest(JSON.stringify({ binary: '../x', abi_version: 1, gpu_backend: 'vulkan' }), FILE);
    expect(result.ok ? [] : result.errors.map((error) => /: ("\w+")/.exec(error)?.[1])).toEqual([
      '"id"',
      '"version"',
      '"abi_version"',
      '"gpu_backend"',
      '"architectures"',
      '"formats"',
      '"binary"',
    ]);
  });
});

describe('readManifest', () => {
  let dir: string;
  beforeAll(async () => {
    dir = await mkdtemp(path.join(os.tmpdir(), 'llm-node-manifest-'));
  });
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('reads and validates a manifest file', async () => {
    const file = path.join(dir, 'manifest.json');
    await writeFile(file, README_MANIFEST);
    expect(await readManifest(file)).toMatchObject({ ok: true, manifest: { id: 'llama_cpp' } });
  });

  it('says a missing file is not found', async () => {
    const file = path.join(dir, 'absent', 'manifest.json');
    expect(await readManifest(file)).toEqual({ ok: false, errors: [`${file}: not found`], warnings: [] });
  });

  it('refuses a directory named manifest.json', async () => {
    const file = path.join(dir, 'folder', 'manifest.json');
    await mkdir(file, { recursive: true });
    expect(await readManifest(file)).toEqual({ ok: false, errors: [`${file}: is a directory, not a manifest file`], warnings: [] });
  });

  it('refuses a file over 1 MiB without reading it', async () => {
    const file = path.join(dir, 'huge.json');
    await writeFile(file, Buffer.alloc(2 * 1024 * 1024, 0x20));
    expect(await readManifest(file)).toEqual({
      ok: false,
      errors: [`${file}: is 2097152 bytes; a manifest may be at most 1048576 bytes (1 MiB)`],
      warnings: [],
    });
  });

  it.skipIf(process.platform === 'win32')('refuses a FIFO instead of waiting on it', async () => {
    const file = path.join(dir, 'fifo.json');
    execFileSync('mkfifo', [file]);
    expect(await readManifest(file)).toEqual({ ok: false, errors: [`${file}: is not a regular file`], warnings: [] });
  });

  it.skipIf(process.platform === 'win32' || process.getuid?.() === 0)('says a file it may not read cannot be read', async () => {
    const file = path.join(dir, 'locked.json');
    await writeFile(file, README_MANIFEST);
    await chmod(file, 0o000);
    expect(await readManifest(file)).toEqual({ ok: false, errors: [`${file}: cannot be read (permission denied)`], warnings: [] });
  });
});
