import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { gguf } from '@huggingface/gguf';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { GgufFormatError, readGgufHeaderFrom } from './gguf-header.js';
import { writeGgufModel } from './testing/index.js';

let dir: string;
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'gguf-header-'));
});
afterAll(() => rm(dir, { recursive: true, force: true }));

describe('readGgufHeaderFrom', () => {
  it('reads what @huggingface/gguf reads, stepping over long arrays other than the vocabulary', async () => {
    const path = join(dir, 'model.gguf');
    const tokens = Array.from({ length: 20_000 }, (_, i) => (i % 7 === 0 ? `é€😀${i}` : `t${i}`));
    await writeGgufModel(path, {
      architecture: 'llama',
      tokens,
      bosTokenId: 7,
      eosTokenId: 19_999,
      chatTemplate: '{{ messages }}',
      contextLength: 8192,
      metadata: {
        'llama.attention.head_count_kv': Array.from({ length: 32 }, (_, i) => (i % 2 === 0 ? 8 : 4)),
        'tokenizer.ggml.scores': Array.from({ length: 5000 }, (_, i) => i),
        'general.name': 'a test model',
      },
      tensorDataBytes: 4096,
    });
    const reference = await gguf(path, { allowLocalFile: true });
    const header = await readGgufHeaderFrom(path);

    // @huggingface/gguf lists the header's own fields among the metadata.
    const metadata = Object.entries(reference.metadata).filter(([key]) => !['version', 'tensor_count', 'kv_count'].includes(key));
    expect(Object.keys(header.metadata).sort()).toEqual(metadata.map(([key]) => key).sort());
    for (const [key, value] of metadata) {
      if (key === 'tokenizer.ggml.scores') expect(header.metadata[key]).toEqual({ skipped: true, length: 5000 });
      else expect(header.metadata[key]).toEqual(typeof value === 'bigint' ? Number(value) : value);
    }
    expect(header.tensorDataOffset).toBe(Number(reference.tensorDataOffset));
    expect(header.tensorCount).toBe(reference.tensorInfos.length);
  });

  it('refuses anything else with a GgufFormatError, never another error, whatever bytes of a header are damaged', async () => {
    const path = join(dir, 'good.gguf');
    await writeGgufModel(path, { architecture: 'llama', chatTemplate: 'x', tensorDataBytes: 64 });
    const good = await readFile(path);
    let seed = 1;
    const random = () => {
      seed = (seed * 1_103_515_245 + 12_345) % 2 ** 31;
      return seed / 2 ** 31;
    };
    const damaged = join(dir, 'damaged.gguf');
    for (let round = 0; round < 300; round++) {
      const bytes = Buffer.from(good);
      for (let i = 0; i < 1 + Math.floor(random() * 4); i++) bytes[Math.floor(random() * 400)] = Math.floor(random() * 256);
      const cut = round % 3 === 0 ? Math.floor(random() * bytes.length) : bytes.length;
      await writeFile(damaged, bytes.subarray(0, cut));
      await readGgufHeaderFrom(damaged).catch((error: unknown) => {
        expect(error).toBeInstanceOf(GgufFormatError);
      });
    }
  });
});
