import { mkdtemp, readFile, rm, truncate, writeFile } from 'node:fs/promises';
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
  it('reads what @huggingface/gguf reads, stepping over long arrays, and the special tokens of the vocabulary', async () => {
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
      else if (key === 'tokenizer.ggml.tokens') expect(header.metadata[key]).toEqual({ skipped: true, length: 20_000 });
      else expect(header.metadata[key]).toEqual(typeof value === 'bigint' ? Number(value) : value);
    }
    // The texts of the tokens the tokenizer.ggml.*_token_id keys name, multi-byte characters included.
    expect(header.tokenTexts).toEqual(
      new Map([
        [7, tokens[7]],
        [19_999, tokens[19_999]],
      ]),
    );
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

  it('refuses headers beyond any real model (keys, vocabulary, strings) at once, and steps over a huge array of numbers', async () => {
    const u32 = (n: number) => Buffer.from(new Uint32Array([n]).buffer);
    const u64 = (n: number) => Buffer.from(new BigUint64Array([BigInt(n)]).buffer);
    const str = (text: string) => Buffer.concat([u64(Buffer.byteLength(text)), Buffer.from(text)]);
    const header = (kvCount: number, ...kvs: Buffer[]) => Buffer.concat([Buffer.from('GGUF'), u32(3), u64(0), u64(kvCount), ...kvs]);
    const crafted = async (bytes: Buffer, size: number) => {
      const path = join(dir, 'crafted.gguf');
      await writeFile(path, bytes);
      await truncate(path, size); // sparse: no disk spent
      return readGgufHeaderFrom(path);
    };
    const GiB = 2 ** 30;
    await expect(crafted(header(1_000_000), GiB)).rejects.toThrow(/metadata keys/);
    const vocabulary = Buffer.concat([str('tokenizer.ggml.tokens'), u32(9), u32(8), u64(5_000_000)]);
    await expect(crafted(header(1, vocabulary), GiB)).rejects.toThrow(/5000000 entries/);
    await expect(crafted(header(1, str('tokenizer.chat_template'), u32(8), u64(100 << 20)), GiB)).rejects.toThrow(/a string of/);
    const numbers = Buffer.concat([str('tokenizer.ggml.tokens'), u32(9), u32(0), u64(200_000_000)]);
    const stepped = await crafted(header(1, numbers), GiB);
    expect(stepped.metadata['tokenizer.ggml.tokens']).toEqual({ skipped: true, length: 200_000_000 });
  });
});
