import { open } from 'node:fs/promises';
import type { FileHandle } from 'node:fs/promises';

/** A metadata value as the registry reads it; large arrays are kept as their length only (`SkippedArray`). */
export type GgufValue = string | number | bigint | boolean | GgufValue[] | SkippedArray;

/** An array the reader stepped over: the registry needs its length, not its elements. */
export interface SkippedArray {
  skipped: true;
  length: number;
}

export interface GgufHeader {
  /** The metadata; the vocabulary (`tokenizer.ggml.tokens`) is a `SkippedArray` too, its texts are in `tokenTexts`. */
  metadata: Record<string, GgufValue>;
  /** The text of each token a `tokenizer.ggml.*_token_id` key names (BOS, EOS, padding…), by id. */
  tokenTexts: ReadonlyMap<number, string>;
  tensorCount: number;
  /** Where the tensor data begins in the file, and the largest tensor offset within it (-1 without tensors). */
  tensorDataOffset: number;
  lastTensorOffset: number;
}

// Arrays kept element by element: per-layer lists and other short ones. Anything longer (vocabulary, merges,
// scores, token types: hundreds of thousands of elements) is stepped over, which is what makes this reader fast:
// decoding them is most of a generic parser's time. Of the vocabulary only the special tokens' texts are read,
// found through where each of its strings lies.
const VOCABULARY = 'tokenizer.ggml.tokens';
const SPECIAL_TOKEN_ID = /^tokenizer\.ggml\.\w+_token_id$/;
const LONGEST_KEPT_LIST = 4096;
const CHUNK = 1 << 20;
// Bounds far above any real model's (a few hundred keys, tens of thousands of tensors, 262,144 tokens, chat
// templates of kilobytes), so that a crafted header cannot make the node spend minutes or gigabytes on it.
const LIMITS = { keys: 65_536, tensors: 1_000_000, vocabulary: 4_194_304, stringBytes: 16 << 20 };

/**
 * Reads a GGUF file's header (version 2 or 3): its metadata, and where its tensor data lies. Throws a
 * `GgufFormatError` for anything that is not a well-formed header within the file.
 */
export async function readGgufHeaderFrom(path: string): Promise<GgufHeader> {
  const file = await open(path, 'r');
  try {
    const reader = new Reader(file, (await file.stat()).size);
    if ((await reader.bytes(4)).toString('latin1') !== 'GGUF') throw new GgufFormatError('no GGUF magic');
    const version = await reader.u32();
    if (version !== 2 && version !== 3) throw new GgufFormatError(`GGUF version ${version} (2 and 3 are read)`);
    const tensorCount = await reader.count();
    const kvCount = await reader.count();
    if (tensorCount > LIMITS.tensors || kvCount > LIMITS.keys) {
      throw new GgufFormatError(`${tensorCount} tensors and ${kvCount} metadata keys`);
    }
    const metadata: Record<string, GgufValue> = {};
    for (let i = 0; i < kvCount; i++) {
      const key = await reader.string();
      metadata[key] = await reader.value(await reader.u32(), key);
    }
    const tokenTexts = new Map<number, string>();
    for (const [key, id] of Object.entries(metadata)) {
      if (!SPECIAL_TOKEN_ID.test(key) || typeof id !== 'number' || tokenTexts.has(id)) continue;
      const text = await reader.vocabularyString(id);
      if (text !== null) tokenTexts.set(id, text);
    }
    let lastTensorOffset = -1;
    for (let i = 0; i < tensorCount; i++) {
      await reader.string(); // name
      const dims = await reader.u32();
      if (dims > 8) throw new GgufFormatError(`a tensor of ${dims} dimensions`);
      await reader.skip(8 * dims + 4); // the dimensions and the type
      lastTensorOffset = Math.max(lastTensorOffset, Number(await reader.u64()));
    }
    const alignment = typeof metadata['general.alignment'] === 'number' ? metadata['general.alignment'] : 32;
    if (alignment <= 0) throw new GgufFormatError(`general.alignment ${alignment}`);
    const tensorDataOffset = Math.ceil(reader.position / alignment) * alignment;
    return { metadata, tokenTexts, tensorCount, tensorDataOffset, lastTensorOffset };
  } finally {
    await file.close();
  }
}

export class GgufFormatError extends Error {}

/** The header goes on past the end of the file: a file cut short, most likely. */
export class GgufTruncatedError extends GgufFormatError {}

/** Sequential little-endian reads over a file, a megabyte at a time; never past its end. */
class Reader {
  #buffer = Buffer.alloc(0);
  #start = 0; // file offset of #buffer[0]
  #at = 0; // read position within #buffer
  // Where each string of the vocabulary begins in the file (its length prefix), once it has been stepped over.
  #vocabulary: Float64Array | null = null;

  constructor(
    readonly file: FileHandle,
    readonly size: number,
  ) {}

  get position(): number {
    return this.#start + this.#at;
  }

  async #ensure(n: number): Promise<void> {
    if (this.#at + n <= this.#buffer.length) return;
    if (this.position + n > this.size) throw new GgufTruncatedError(`its GGUF header runs past the end of the file (${this.size} bytes)`);
    const keep = this.#buffer.subarray(this.#at);
    const length = Math.min(Math.max(n, CHUNK), this.size - this.position);
    const next = Buffer.allocUnsafe(length);
    keep.copy(next);
    const { bytesRead } = await this.file.read(next, keep.length, length - keep.length, this.position + keep.length);
    if (bytesRead < length - keep.length) throw new GgufTruncatedError('the file got shorter while its GGUF header was read');
    this.#start = this.position;
    this.#buffer = next;
    this.#at = 0;
  }

  async bytes(n: number): Promise<Buffer> {
    await this.#ensure(n);
    const out = this.#buffer.subarray(this.#at, this.#at + n);
    this.#at += n;
    return out;
  }

  async skip(n: number): Promise<void> {
    if (this.position + n > this.size) throw new GgufTruncatedError(`its GGUF header runs past the end of the file (${this.size} bytes)`);
    if (this.#at + n <= this.#buffer.length) {
      this.#at += n;
      return;
    }
    this.#start = this.position + n;
    this.#buffer = Buffer.alloc(0);
    this.#at = 0;
  }

  async u32(): Promise<number> {
    return (await this.bytes(4)).readUInt32LE(0);
  }

  async u64(): Promise<bigint> {
    return (await this.bytes(8)).readBigUInt64LE(0);
  }

  /** A u64 count, which must fit what is left of the file (one byte an element at least). */
  async count(): Promise<number> {
    const n = await this.u64();
    if (n > BigInt(this.size - this.position)) throw new GgufTruncatedError(`its GGUF header counts ${n} in a file of ${this.size} bytes`);
    return Number(n);
  }

  async string(): Promise<string> {
    const length = await this.count();
    if (length > LIMITS.stringBytes) throw new GgufFormatError(`a string of ${length} bytes`);
    return (await this.bytes(length)).toString('utf8');
  }

  async value(type: number, key: string): Promise<GgufValue> {
    const size = SCALAR_SIZES[type];
    if (size !== undefined) return scalar(type, await this.bytes(size));
    if (type === STRING) return this.string();
    if (type !== ARRAY) throw new GgufFormatError(`value type ${type} of ${key}`);
    const elementType = await this.u32();
    const length = await this.count();
    const vocabulary = key === VOCABULARY && elementType === STRING;
    if (vocabulary && length > LIMITS.vocabulary) throw new GgufFormatError(`${key} holds ${length} entries`);
    const keep = !vocabulary && length <= LONGEST_KEPT_LIST;
    if (elementType === ARRAY) throw new GgufFormatError(`an array of arrays in ${key}`);
    const elementSize = SCALAR_SIZES[elementType];
    if (!keep && elementSize !== undefined) {
      await this.skip(length * elementSize);
      return { skipped: true, length };
    }
    if (elementType === STRING) {
      const offsets = vocabulary ? new Float64Array(length) : null;
      const strings = await this.#strings(length, keep, offsets);
      if (offsets) this.#vocabulary = offsets;
      return strings ?? { skipped: true, length };
    }
    const values: GgufValue[] = [];
    for (let i = 0; i < length; i++) values.push(await this.value(elementType, key));
    return values;
  }

  /** The text of the vocabulary's string `id`; null without a vocabulary or past its end. */
  async vocabularyString(id: number): Promise<string | null> {
    const offset = this.#vocabulary?.[id];
    if (offset === undefined) return null;
    const prefix = Buffer.alloc(8);
    await this.file.read(prefix, 0, 8, offset);
    const text = Buffer.alloc(prefix.readUInt32LE(0)); // checked against the file and the limit when stepped over
    await this.file.read(text, 0, text.length, offset + 8);
    return text.toString('utf8');
  }

  /**
   * `length` strings, decoded when `keep`, each one's file offset written to `offsets` when given: read straight
   * from the buffer while it holds them (a vocabulary is hundreds of thousands of short strings, and an await for
   * each would be most of the time), refilled as needed.
   */
  async #strings(length: number, keep: boolean, offsets: Float64Array | null): Promise<string[] | null> {
    const out: string[] | null = keep ? [] : null;
    for (let i = 0; i < length; ) {
      // This loop runs once per string: locals rather than fields, two 32-bit halves rather than a BigInt.
      const buffer = this.#buffer;
      const start = this.#start;
      const fileLeft = this.size - start - 8; // after a length prefix at buffer[0]
      let at = this.#at;
      while (i < length && at + 8 <= buffer.length) {
        const n = buffer.readUInt32LE(at);
        if (buffer.readUInt32LE(at + 4) !== 0 || n > LIMITS.stringBytes || n > fileLeft - at) break; // #peekCount throws
        const end = at + 8 + n;
        if (end > buffer.length) break;
        if (offsets) offsets[i] = start + at;
        out?.push(buffer.toString('utf8', at + 8, end));
        at = end;
        i++;
      }
      this.#at = at;
      if (i < length) await this.#ensure(8 + Number(await this.#peekCount()));
    }
    return out;
  }

  /** The length of the string at the read position, checked, without consuming it. */
  async #peekCount(): Promise<bigint> {
    await this.#ensure(8);
    const n = this.#buffer.readBigUInt64LE(this.#at);
    if (n > BigInt(this.size - this.position - 8))
      throw new GgufTruncatedError(`its GGUF header counts ${n} in a file of ${this.size} bytes`);
    if (n > BigInt(LIMITS.stringBytes)) throw new GgufFormatError(`a string of ${n} bytes`);
    return n;
  }
}

const STRING = 8;
const ARRAY = 9;
// Sizes of the scalar types: u8, i8, u16, i16, u32, i32, f32, bool, (string), (array), u64, i64, f64.
const SCALAR_SIZES: Record<number, number> = { 0: 1, 1: 1, 2: 2, 3: 2, 4: 4, 5: 4, 6: 4, 7: 1, 10: 8, 11: 8, 12: 8 };

function scalar(type: number, b: Buffer): GgufValue {
  switch (type) {
    case 0:
      return b.readUInt8(0);
    case 1:
      return b.readInt8(0);
    case 2:
      return b.readUInt16LE(0);
    case 3:
      return b.readInt16LE(0);
    case 4:
      return b.readUInt32LE(0);
    case 5:
      return b.readInt32LE(0);
    case 6:
      return b.readFloatLE(0);
    case 7:
      return b.readUInt8(0) !== 0;
    case 10:
      return safe(b.readBigUInt64LE(0));
    case 11:
      return safe(b.readBigInt64LE(0));
    default:
      return b.readDoubleLE(0);
  }
}

/** A 64-bit integer as a number where it is exact, else as a bigint. */
function safe(n: bigint): number | bigint {
  return n <= BigInt(Number.MAX_SAFE_INTEGER) && n >= BigInt(Number.MIN_SAFE_INTEGER) ? Number(n) : n;
}
