import type { NativeEnd } from './binding.js';
import { outcomeOf } from './generation.js';
import type { GenerationOutcome } from './token-stream.js';
import type { TokenChunk, TokenDetail } from './types.js';

// The token pipe of an engine host (native/token_pipe.cc writes it): little-endian frames
//   u32 size (the bytes after it), u32 generation, u8 kind, then
//   kind 0, tokens: u32 count, count i32 ids, count f32 logprobs, count u32 byte ends, the tokens' text bytes;
//   kind 1, the end: the JSON of how the generation ended (a NativeEnd), the generation's last frame.
const HEADER = 9;
const TOKENS = 0;
const END = 1;

export interface TokenFrameHandlers {
  chunk(generation: number, chunk: TokenChunk): void;
  end(generation: number, outcome: GenerationOutcome): void;
}

/**
 * Reads an engine host's token pipe and turns its frames into what a Generation hands out: for each
 * generation, one chunk per read with every token that arrived, its text decoded as the in-process binding
 * decodes it (native/generation.cc: a character belongs to the token whose bytes complete it; tokens that end
 * inside a character wait for the next read), then its end.
 */
export class TokenFrameReader {
  readonly #handlers: TokenFrameHandlers;
  readonly #generations = new Map<number, GenerationText>();
  /** Bytes read and not parsed yet (the start of a frame), kept as they came until a whole frame is there. */
  #pending: Buffer[] = [];
  #pendingBytes = 0;
  /** The size the first pending frame needs, once its size field was read. */
  #needed = 0;

  constructor(handlers: TokenFrameHandlers) {
    this.#handlers = handlers;
  }

  /** A generation whose frames will come; `logprobs` when its request asked for token details. */
  expect(generation: number, logprobs: boolean): void {
    this.#generations.set(generation, new GenerationText(logprobs));
  }

  /** Bytes read from the pipe. */
  push(data: Buffer): void {
    // A frame larger than a read arrives in pieces: they are joined once it is whole, not at every read.
    this.#pending.push(data);
    this.#pendingBytes += data.length;
    if (this.#needed === 0 && this.#pendingBytes >= 4) {
      const head = this.#pending[0]!.length >= 4 ? this.#pending[0]! : Buffer.concat(this.#pending);
      this.#needed = 4 + head.readUInt32LE(0);
    }
    if (this.#pendingBytes < this.#needed) return;
    const bytes = this.#pending.length === 1 ? this.#pending[0]! : Buffer.concat(this.#pending, this.#pendingBytes);
    this.#pending = [];
    this.#pendingBytes = 0;
    this.#needed = 0;
    const touched = new Set<number>();
    let at = 0;
    while (bytes.length - at >= 4) {
      const size = bytes.readUInt32LE(at);
      if (bytes.length - at - 4 < size) break;
      const generation = bytes.readUInt32LE(at + 4);
      const text = this.#generations.get(generation);
      if (text !== undefined && bytes[at + 8] === TOKENS) {
        text.add(bytes, at + HEADER, at + 4 + size);
        touched.add(generation);
      } else if (text !== undefined && bytes[at + 8] === END) {
        const last = text.take(true);
        if (last !== null) this.#handlers.chunk(generation, last);
        touched.delete(generation);
        this.#generations.delete(generation);
        this.#handlers.end(generation, outcomeOf(JSON.parse(bytes.toString('utf8', at + HEADER, at + 4 + size)) as NativeEnd));
      }
      at += 4 + size;
    }
    if (at < bytes.length) {
      const rest = Buffer.from(bytes.subarray(at));
      this.#pending = [rest];
      this.#pendingBytes = rest.length;
      if (rest.length >= 4) this.#needed = 4 + rest.readUInt32LE(0);
    }
    for (const generation of touched) {
      const chunk = this.#generations.get(generation)!.take(false);
      if (chunk !== null) this.#handlers.chunk(generation, chunk);
    }
  }
}

/** One generation's tokens on their way to chunks. */
class GenerationText {
  readonly #logprobs: boolean;
  readonly #decoder = new TextDecoder('utf-8');
  readonly #boundary = new Utf8Boundary();
  // Tokens not handed out yet: the text they decoded to and where each one's piece ends in it.
  #text = '';
  #pieceEnds: number[] = [];
  #details: TokenDetail[] = [];
  /** How many of them end at a character boundary, counting from the first. */
  #complete = 0;

  constructor(logprobs: boolean) {
    this.#logprobs = logprobs;
  }

  /** A tokens frame's body, bytes[from, to). */
  add(bytes: Buffer, from: number, to: number): void {
    const count = bytes.readUInt32LE(from);
    const ends = from + 4 + 8 * count;
    const textStart = ends + 4 * count;
    const byteEnd = (i: number) => textStart + bytes.readUInt32LE(ends + 4 * i);
    if (this.#boundary.atBoundary() && isAscii(bytes, textStart, to)) {
      // The common case: one string for the frame, and each piece ends where its bytes do.
      const base = this.#text.length - textStart;
      this.#text += bytes.toString('latin1', textStart, to);
      for (let i = 0; i < count; i++) this.#pieceEnds.push(base + byteEnd(i));
      this.#complete = this.#pieceEnds.length;
    } else {
      for (let i = 0, start = textStart; i < count; start = byteEnd(i), i++) {
        const piece = bytes.subarray(start, byteEnd(i));
        this.#text += this.#decoder.decode(piece, { stream: true });
        this.#boundary.feed(piece);
        this.#pieceEnds.push(this.#text.length);
        if (this.#boundary.atBoundary()) this.#complete = this.#pieceEnds.length;
      }
    }
    if (!this.#logprobs) return;
    for (let i = 0, start = textStart; i < count; start = byteEnd(i), i++) {
      const piece = bytes.subarray(start, byteEnd(i));
      this.#details.push({
        id: bytes.readInt32LE(from + 4 + 4 * i),
        text: piece.toString('utf8'),
        bytes: [...piece],
        logprob: bytes.readFloatLE(from + 4 + 4 * count + 4 * i),
      });
    }
  }

  /** The tokens that end at a character boundary as a chunk (all of them, an unfinished character as U+FFFD, when `last`). */
  take(last: boolean): TokenChunk | null {
    if (last && this.#pieceEnds.length > 0) {
      this.#text += this.#decoder.decode();
      this.#pieceEnds[this.#pieceEnds.length - 1] = this.#text.length;
      this.#complete = this.#pieceEnds.length;
    }
    if (this.#complete === 0) return null;
    const count = this.#complete;
    const length = this.#pieceEnds[count - 1]!;
    const chunk: TokenChunk = {
      text: this.#text.slice(0, length),
      tokenCount: count,
      pieceEnds: Uint32Array.from(this.#pieceEnds.slice(0, count)),
    };
    if (this.#logprobs) chunk.tokens = this.#details.splice(0, count);
    this.#text = this.#text.slice(length);
    this.#pieceEnds = this.#pieceEnds.slice(count).map((end) => end - length);
    this.#complete = 0;
    return chunk;
  }
}

function isAscii(bytes: Buffer, from: number, to: number): boolean {
  for (let i = from; i < to; i++) if (bytes[i]! > 0x7f) return false;
  return true;
}

/**
 * Whether UTF-8 fed so far ends between characters, by the WHATWG decoder's rules (native/utf8.h), which
 * TextDecoder follows: it says where a token's bytes leave a character unfinished.
 */
class Utf8Boundary {
  #needed = 0;
  #seen = 0;
  #lower = 0x80;
  #upper = 0xbf;

  atBoundary(): boolean {
    return this.#needed === 0;
  }

  feed(bytes: Uint8Array): void {
    for (let i = 0; i < bytes.length; ) {
      const byte = bytes[i]!;
      if (this.#needed === 0) {
        i++;
        if (byte >= 0xc2 && byte <= 0xdf) this.#needed = 1;
        else if (byte >= 0xe0 && byte <= 0xef) {
          if (byte === 0xe0) this.#lower = 0xa0;
          if (byte === 0xed) this.#upper = 0x9f;
          this.#needed = 2;
        } else if (byte >= 0xf0 && byte <= 0xf4) {
          if (byte === 0xf0) this.#lower = 0x90;
          if (byte === 0xf4) this.#upper = 0x8f;
          this.#needed = 3;
        }
        continue;
      }
      if (byte < this.#lower || byte > this.#upper) {
        this.#reset(); // an invalid sequence ends here; this byte starts afresh
        continue;
      }
      i++;
      this.#lower = 0x80;
      this.#upper = 0xbf;
      if (++this.#seen === this.#needed) this.#reset();
    }
  }

  #reset(): void {
    this.#needed = 0;
    this.#seen = 0;
    this.#lower = 0x80;
    this.#upper = 0xbf;
  }
}
