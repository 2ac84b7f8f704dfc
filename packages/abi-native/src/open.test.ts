import { writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, test } from 'vitest';
import { ENGINE_ABI_VERSION, EngineError, openEngine } from './index.js';
import { buildTestPlugin } from './testing/index.js';

function openError(libraryPath: string, options?: { expectedId?: string }): EngineError {
  try {
    openEngine(libraryPath, options);
  } catch (error) {
    expect(error).toBeInstanceOf(EngineError);
    return error as EngineError;
  }
  throw new Error(`opening ${libraryPath} did not fail`);
}

describe('opening a plugin', () => {
  test('speaks ABI version 1, the number in engine_api.h', () => {
    expect(ENGINE_ABI_VERSION).toBe(1);
  });

  test("opens and initialises the plugin guide's minimal plugin, compiled unchanged", async () => {
    const engine = openEngine(await buildTestPlugin('minimal'), { expectedId: 'my_engine' });
    expect(engine.info).toEqual({
      abiVersion: 1,
      id: 'my_engine',
      version: '1.0.0',
      threadSafe: false,
      jsonSchema: false,
      logitBias: false,
    });
    expect(engine.capabilities).toEqual([]);
    await engine.init({ gpuBackend: 'cpu', pluginDir: tmpdir() });
    await engine.loadModel('any', { path: '/nonexistent/model.gguf', format: 'gguf' });
    const generation = engine.generate({ modelId: 'any', prompt: 'Hello!' });
    const chunks = [];
    for await (const chunk of generation) chunks.push(chunk);
    expect(chunks).toEqual([]); // its engine_generate leaves *results NULL: no tokens
    expect(await generation.result).toEqual({ finishReason: 'stop', promptTokens: 0, completionTokens: 0 });
    await engine.close();
  });

  test('reports the optional entry points it finds as capabilities', async () => {
    const engine = openEngine(await buildTestPlugin('echo'));
    expect([...engine.capabilities].sort()).toEqual(
      ['embed', 'generate_stream', 'last_error', 'model_estimate_vram', 'model_load', 'model_stats', 'thread_safe', 'vram_used'].sort(),
    );
    expect(engine.info.threadSafe).toBe(true);
    await engine.close();
  });

  test('refuses an ABI 2 plugin with the exact message, before calling engine_init', async () => {
    // abi2.c aborts the process if anything but engine_get_info is called.
    const error = openError(await buildTestPlugin('abi2'));
    expect(error.code).toBe('abi_mismatch');
    expect(error.message).toBe('ABI version mismatch: expected 1, got 2');
  });

  test('names a missing required entry point', async () => {
    const error = openError(await buildTestPlugin('missing_symbol'));
    expect(error.code).toBe('missing_symbol');
    expect(error.message).toMatch(/does not export the required entry point\(s\) engine_generate$/);
  });

  test('refuses engine_model_load without engine_model_unload', async () => {
    const error = openError(await buildTestPlugin('missing_symbol', { defines: { UNPAIRED_MODEL_LOAD: 1 } }));
    expect(error.code).toBe('missing_symbol');
    expect(error.message).toMatch(/engine_model_load without engine_model_unload/);
  });

  test.each([
    ['NULL_INFO', /engine_get_info\(\) returned NULL/],
    ['NULL_ID', /has no engine_id/],
    ['NULL_VERSION', /has no version/],
  ])('refuses an engine_get_info() with %s', async (define, message) => {
    const error = openError(await buildTestPlugin('bad_info', { defines: { [define]: 1 } }));
    expect(error.code).toBe('invalid_info');
    expect(error.message).toMatch(message);
  });

  test('refuses a plugin whose id is not the one expected, naming both', async () => {
    const error = openError(await buildTestPlugin('echo'), { expectedId: 'llama_cpp' });
    expect(error.code).toBe('id_mismatch');
    expect(error.message).toMatch(/'llama_cpp'.*'echo'/);
  });

  test('reports the id a build was given', async () => {
    const engine = openEngine(await buildTestPlugin('echo', { defines: { ENGINE_ID: 'other' } }), { expectedId: 'other' });
    expect(engine.info.id).toBe('other');
    await engine.close();
  });

  test('explains a file that is not a library, and a path that does not exist', async () => {
    const notALibrary = join(tmpdir(), `llm-node-not-a-library-${process.pid}.so`);
    await writeFile(notALibrary, 'just text');
    for (const path of [notALibrary, join(tmpdir(), 'llm-node-no-such-plugin.so')]) {
      const error = openError(path);
      expect(error.code).toBe('open_failed');
      expect(error.message).toContain(path);
    }
  });
});
