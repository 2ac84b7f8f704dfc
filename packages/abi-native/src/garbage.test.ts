import { tmpdir } from 'node:os';
import { describe, expect, test } from 'vitest';
import { EngineHost, openEngine } from './index.js';
import type { Engine, Generation, TokenChunk } from './index.js';
import { buildTestPlugin } from './testing/index.js';

// Every case twice: the plugin in this process (tokens decoded natively) and in an engine host (tokens read from
// its token pipe and decoded in TypeScript); a client must not be able to tell them apart.
const openers: [string, (library: string) => Promise<Engine>][] = [
  ['in this process', async (library) => openEngine(library)],
  ['in an engine host', (library) => EngineHost.start(library)],
];

describe.each(openers)('a plugin %s', (_where, open) => {
  async function openGarbage(defines: Record<string, number> = {}): Promise<Engine> {
    const engine = await open(await buildTestPlugin('garbage', { defines }));
    await engine.init({ gpuBackend: 'cpu', pluginDir: tmpdir() });
    return engine;
  }

  async function collect(generation: Generation) {
    const chunks: TokenChunk[] = [];
    for await (const chunk of generation) chunks.push(chunk);
    const pieces = chunks.flatMap((chunk) => [...chunk.pieceEnds].map((end, i) => chunk.text.slice(chunk.pieceEnds[i - 1] ?? 0, end)));
    return { chunks, pieces, text: chunks.map((chunk) => chunk.text).join('') };
  }

  describe('UTF-8 split across tokens, and invalid bytes', () => {
    // garbage.c "utf8": "caf" "\xC3" "\xA9 " "\xE2\x82" "\xAC" " \xFF " "end\xF0\x9F"
    const expectedPieces = ['caf', '', 'é ', '', '€', ' \uFFFD ', 'end\uFFFD'];

    test.each([
      ['in one delivery', {}],
      ['token by token', { GARBAGE_TOKEN_DELAY_US: 20000 }],
    ])('joins split characters, replaces invalid bytes and the unfinished end with U+FFFD (%s)', async (_, defines) => {
      const engine = await openGarbage(defines);
      const { pieces, text } = await collect(engine.generate({ prompt: 'utf8' }));
      expect(text).toBe('café € \uFFFD end\uFFFD');
      expect(pieces).toEqual(expectedPieces); // a character belongs to the token that completes it
      await engine.close();
    });

    test('reports each token’s own bytes, decoded on their own', async () => {
      const engine = await openGarbage();
      const { chunks } = await collect(engine.generate({ prompt: 'utf8', logprobs: true }));
      const tokens = chunks.flatMap((chunk) => chunk.tokens ?? []);
      expect(tokens.map((token) => token.text)).toEqual(['caf', '\uFFFD', '\uFFFD ', '\uFFFD', '\uFFFD', ' \uFFFD ', 'end\uFFFD']);
      expect(tokens[1]).toEqual({ id: 1, text: '\uFFFD', bytes: [0xc3], logprob: -1 });
      await engine.close();
    });
  });

  describe('a plugin that breaks the ABI', () => {
    test.each([
      ['negative-length', 'plugin_error', 'engine_generate_stream produced a token with text_len -1'],
      ['null-text', 'plugin_error', 'engine_generate_stream produced a token with NULL text and text_len 4'],
      ['bad-finish', 'plugin_error', 'engine_generate_stream reported finish_reason 42, which engine_api.h does not define'],
      ['negative-count', 'plugin_error', 'engine_generate_stream reported negative token counts (prompt 1, completion -3)'],
      ['bad-code', 'internal', 'engine_generate_stream failed with 1234, an error code engine_api.h does not define'],
    ])('fails the generation cleanly on %s', async (prompt, code, message) => {
      const engine = await openGarbage();
      const generation = engine.generate({ prompt });
      await expect(collect(generation)).rejects.toMatchObject({ code, message });
      await expect(generation.result).rejects.toMatchObject({ code, message });
      await engine.close();
    });

    test('keeps the unknown return code for callers to see', async () => {
      const engine = await openGarbage();
      await expect(engine.generate({ prompt: 'bad-code' }).result).rejects.toMatchObject({ engineCode: 1234 });
      await engine.close();
    });

    test('delivers nothing more to a consumer that stopped, even when the plugin keeps calling back', async () => {
      const engine = await openGarbage({ GARBAGE_TOKEN_DELAY_US: 20000 });
      const generation = engine.generate({ prompt: 'ignore-stop' });
      let tokens = 0;
      for await (const chunk of generation) {
        tokens += chunk.tokenCount;
        break;
      }
      expect(tokens).toBeGreaterThan(0);
      expect(await generation.next()).toEqual({ value: undefined, done: true });
      expect((await generation.result).finishReason).toBe('cancelled');
      await engine.close();
    });

    test('refuses a legacy engine_generate token with a negative length', async () => {
      const engine = await open(await buildTestPlugin('legacy'));
      await engine.init({ gpuBackend: 'cpu', pluginDir: tmpdir() });
      await engine.loadModel('m', { path: await buildTestPlugin('legacy'), format: 'gguf' });
      await expect(engine.generate({ prompt: 'garbage' }).result).rejects.toMatchObject({
        code: 'plugin_error',
        message: 'engine_generate produced a token with text_len -1',
      });
      await engine.close();
    });
  });
});
