import { mkdir, readFile } from 'node:fs/promises';
import { dirname } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { parseArgs } from 'node:util';

import { GGUFValueType, type GGUFTypedMetadata } from '@huggingface/gguf';

import { rawArrayElements, readRawEntries, writeGguf, type GgufTensor, type RawGgufEntry, type TensorType } from './gguf-file.js';

/** The shape of a made model. */
export interface ModelShape {
  /** Embedding width. */
  dim: number;
  layers: number;
  heads: number;
  /** Key/value heads (grouped-query attention when fewer than `heads`). */
  kvHeads: number;
  /** Feed-forward width. */
  ffn: number;
  /** Trained context length written to the metadata. */
  context: number;
  /** Type of the matrices (norms are always f32). */
  type: TensorType;
  /** Seed of the random weights: the same seed and shape give the same file. */
  seed: number;
  /** general.name. */
  name?: string;
}

/** The model of the CPU benchmark (bench/cpu): tiny, so that the 128,256-token vocabulary dominates. */
export const DEFAULT_SHAPE: ModelShape = {
  dim: 64,
  layers: 2,
  heads: 4,
  kvHeads: 2,
  ffn: 256,
  context: 8192,
  type: 'f16',
  seed: 1,
};

export interface MakeModelOptions {
  /** Metadata written over the made model's (numbers as UINT32): a bad file for a test, say. */
  metadata?: Record<string, number | string>;
  /**
   * The model writes only tokens that are whole UTF-8 text on their own, never a special token or a byte token that
   * splits a character, as a trained model does. Random weights otherwise write text that is not valid UTF-8, which a
   * server that parses its model's output rejects mid-stream (llama-server's chat parser does): for benchmarks
   * against such servers.
   */
  textOnly?: boolean;
}

// Written by this package's build from node-llama-cpp's llama.cpp bundle (scripts/build-plugin.mjs).
const LLAMA_CPP_SOURCE = new URL('../build/llama.cpp/', import.meta.url);
const VOCABULARY = new URL('models/ggml-vocab-llama-bpe.gguf', LLAMA_CPP_SOURCE);
const CHAT_TEMPLATE = new URL('models/templates/meta-llama-Llama-3.2-3B-Instruct.jinja', LLAMA_CPP_SOURCE);

const FILE_TYPE: Record<TensorType, number> = { f32: 0, f16: 1, q8_0: 7 }; // llama_ftype ALL_F32, MOSTLY_F16, MOSTLY_Q8_0

/**
 * Writes a llama-architecture GGUF with random weights, the real Llama 3 tokenizer (128,256 tokens, from
 * llama.cpp's models/ggml-vocab-llama-bpe.gguf) and the Llama 3.2 Instruct chat template. It loads and runs
 * like a real model; its text is noise.
 */
export async function makeModel(outPath: string, shape: Partial<ModelShape> = {}, options: MakeModelOptions = {}): Promise<void> {
  const s: ModelShape = { ...DEFAULT_SHAPE, ...shape };
  checkShape(s);
  const vocabulary = await readVocabulary();
  const nVocab = vocabulary.find((entry) => entry.key === 'tokenizer.ggml.tokens')!.arrayLength!;
  const metadata = await llamaMetadata(s, nVocab, options.metadata ?? {});
  await mkdir(dirname(outPath), { recursive: true });
  const copied = vocabulary.filter((entry) => !(entry.key in metadata));
  const tensors = randomTensors(s, nVocab);
  if (options.textOnly) suppressTokens(tensors, s, nonTextTokens(vocabulary));
  await writeGguf(outPath, metadata, tensors, copied);
}

/** The GGUF metadata of a llama model of this shape and the chat template; the vocabulary is copied beside it. */
async function llamaMetadata(
  s: ModelShape,
  nVocab: number,
  extra: NonNullable<MakeModelOptions['metadata']>,
): Promise<Record<string, GGUFTypedMetadata[string]>> {
  const headDim = s.dim / s.heads;
  const metadata: Record<string, GGUFTypedMetadata[string]> = {
    'general.architecture': { value: 'llama', type: GGUFValueType.STRING },
    'general.name': {
      value: s.name ?? `random-weight llama (dim ${s.dim}, ${s.layers} layers, Llama 3 tokenizer)`,
      type: GGUFValueType.STRING,
    },
    'general.file_type': { value: FILE_TYPE[s.type], type: GGUFValueType.UINT32 },
    'llama.vocab_size': { value: nVocab, type: GGUFValueType.UINT32 },
    'llama.context_length': { value: s.context, type: GGUFValueType.UINT32 },
    'llama.embedding_length': { value: s.dim, type: GGUFValueType.UINT32 },
    'llama.block_count': { value: s.layers, type: GGUFValueType.UINT32 },
    'llama.feed_forward_length': { value: s.ffn, type: GGUFValueType.UINT32 },
    'llama.attention.head_count': { value: s.heads, type: GGUFValueType.UINT32 },
    'llama.attention.head_count_kv': { value: s.kvHeads, type: GGUFValueType.UINT32 },
    'llama.rope.dimension_count': { value: headDim, type: GGUFValueType.UINT32 },
    'llama.rope.freq_base': { value: 500000, type: GGUFValueType.FLOAT32 },
    'llama.attention.layer_norm_rms_epsilon': { value: 1e-5, type: GGUFValueType.FLOAT32 },
    'tokenizer.ggml.add_bos_token': { value: true, type: GGUFValueType.BOOL },
    'tokenizer.chat_template': { value: await readFile(CHAT_TEMPLATE, 'utf8'), type: GGUFValueType.STRING },
  };
  for (const [key, value] of Object.entries(extra)) {
    metadata[key] = typeof value === 'string' ? { value, type: GGUFValueType.STRING } : { value, type: GGUFValueType.UINT32 };
  }

  return metadata;
}

/** Every tensor of a llama model of this shape: random weights drawn from the shape's seed, norms of 1. */
function randomTensors(s: ModelShape, nVocab: number): GgufTensor[] {
  const headDim = s.dim / s.heads;
  const random = mulberry32(s.seed);
  const matrix = (name: string, inputs: number, outputs: number, scale = 1 / Math.sqrt(inputs)): GgufTensor => {
    const values = new Float32Array(inputs * outputs);
    for (let i = 0; i < values.length; i++) {
      values[i] = (random() * 2 - 1) * scale;
    }
    return { name, dims: [inputs, outputs], type: s.type, values };
  };
  const norm = (name: string): GgufTensor => ({
    name,
    dims: [s.dim],
    type: 'f32',
    values: new Float32Array(s.dim).fill(1),
  });

  const tensors: GgufTensor[] = [matrix('token_embd.weight', s.dim, nVocab, 1)];
  for (let layer = 0; layer < s.layers; layer++) {
    const blk = `blk.${layer}`;
    tensors.push(
      norm(`${blk}.attn_norm.weight`),
      matrix(`${blk}.attn_q.weight`, s.dim, s.dim),
      matrix(`${blk}.attn_k.weight`, s.dim, s.kvHeads * headDim),
      matrix(`${blk}.attn_v.weight`, s.dim, s.kvHeads * headDim),
      matrix(`${blk}.attn_output.weight`, s.dim, s.dim),
      norm(`${blk}.ffn_norm.weight`),
      matrix(`${blk}.ffn_gate.weight`, s.dim, s.ffn),
      matrix(`${blk}.ffn_up.weight`, s.dim, s.ffn),
      matrix(`${blk}.ffn_down.weight`, s.ffn, s.dim),
    );
  }
  tensors.push(norm('output_norm.weight'), matrix('output.weight', s.dim, nVocab));

  return tensors;
}

// How the non-text tokens are kept out: dimension 0 of the residual stream holds a constant, which every token's
// embedding sets and no layer writes to (row 0 of the attention's and the feed-forward's output matrices is zero).
// At the output its normalised value is then always positive and large, so a negative output weight on it puts a
// token's logit so far below the others that it is not sampled at the usual temperatures (engine.test.ts samples
// 300 tokens at temperature 1).
const RESIDUAL_CONSTANT = 8;
const SUPPRESSING_WEIGHT = -3;

function suppressTokens(tensors: GgufTensor[], s: ModelShape, suppressed: number[]): void {
  const tensor = (name: string) => tensors.find((t) => t.name === name)!.values;
  const embeddings = tensor('token_embd.weight');
  for (let token = 0; token * s.dim < embeddings.length; token++) embeddings[token * s.dim] = RESIDUAL_CONSTANT;
  for (let layer = 0; layer < s.layers; layer++) {
    tensor(`blk.${layer}.attn_output.weight`).fill(0, 0, s.dim);
    tensor(`blk.${layer}.ffn_down.weight`).fill(0, 0, s.ffn);
  }
  const output = tensor('output.weight');
  for (const token of suppressed) output[token * s.dim] = SUPPRESSING_WEIGHT;
}

/** The tokens that are not normal text, or whose bytes are not whole UTF-8 characters on their own. */
function nonTextTokens(vocabulary: RawGgufEntry[]): number[] {
  const entry = (key: string) => vocabulary.find((e) => e.key === key)!;
  const texts = rawArrayElements(entry('tokenizer.ggml.tokens'));
  const types = rawArrayElements(entry('tokenizer.ggml.token_type'));
  const nonText: number[] = [];
  texts.forEach((text, token) => {
    if (types[token]!.readInt32LE() !== NORMAL_TOKEN || !isWholeText(byteLevelBytes(text.toString('utf8')))) nonText.push(token);
  });
  return nonText;
}

const NORMAL_TOKEN = 1; // llama_token_type LLAMA_TOKEN_TYPE_NORMAL

const utf8 = new TextDecoder('utf-8', { fatal: true });

function isWholeText(bytes: Uint8Array | null): boolean {
  if (bytes === null) return false;
  try {
    utf8.decode(bytes);
    return true;
  } catch {
    return false;
  }
}

// GPT-2's byte-level BPE, which Llama 3's vocabulary uses, writes each byte as a printable character: the
// printable bytes as themselves, the other 68 as the characters from U+0100 on, in byte order.
const BYTE_OF_CHARACTER = (() => {
  const printable = (b: number) => (b >= 0x21 && b <= 0x7e) || (b >= 0xa1 && b <= 0xac) || (b >= 0xae && b <= 0xff);
  const map = new Map<number, number>();
  let next = 0x100;
  for (let b = 0; b < 256; b++) map.set(printable(b) ? b : next++, b);
  return map;
})();

/** A token's bytes from its byte-level text; null for text that is not byte-level. */
function byteLevelBytes(text: string): Uint8Array | null {
  const bytes = [...text].map((character) => BYTE_OF_CHARACTER.get(character.codePointAt(0)!));
  return bytes.includes(undefined) ? null : Uint8Array.from(bytes as number[]);
}

function checkShape(s: ModelShape): void {
  for (const key of ['dim', 'layers', 'heads', 'kvHeads', 'ffn', 'context'] as const) {
    if (!Number.isInteger(s[key]) || s[key] < 1) {
      throw new Error(`${key} must be a positive integer, not ${s[key]}`);
    }
  }
  if (s.dim % s.heads !== 0 || s.heads % s.kvHeads !== 0) {
    throw new Error('dim must be a multiple of heads, and heads a multiple of kvHeads');
  }
  if (s.type === 'q8_0' && (s.dim % 32 !== 0 || s.ffn % 32 !== 0)) {
    throw new Error('q8_0 needs dim and ffn to be multiples of 32');
  }
}

let vocabulary: Promise<RawGgufEntry[]> | undefined;

/** The tokenizer.* entries of llama.cpp's Llama 3 vocabulary file, as encoded there; read once. */
function readVocabulary(): Promise<RawGgufEntry[]> {
  vocabulary ??= parseVocabulary();
  vocabulary.catch(() => (vocabulary = undefined)); // a failed read is tried again next time
  return vocabulary;
}

async function parseVocabulary(): Promise<RawGgufEntry[]> {
  const entries = await readRawEntries(fileURLToPath(VOCABULARY)).catch((error: unknown) => {
    throw new Error(
      `cannot read the Llama 3 vocabulary at ${fileURLToPath(VOCABULARY)}; ` +
        'build @llm-node/engine-llama-cpp first (pnpm --filter @llm-node/engine-llama-cpp build)',
      { cause: error },
    );
  });
  return entries.filter((entry) => entry.key.startsWith('tokenizer.'));
}

// A small seeded generator: the same seed gives the same weights on every machine (the onnx maker's too).
export function mulberry32(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const USAGE = `usage: node make-model.js --out <file.gguf> [--dim 64] [--layers 2] [--heads 4] [--kv-heads 2]
                          [--ffn 256] [--context 8192] [--type f16|f32|q8_0] [--seed 1] [--name <text>] [--text-only]`;

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      out: { type: 'string' },
      dim: { type: 'string' },
      layers: { type: 'string' },
      heads: { type: 'string' },
      'kv-heads': { type: 'string' },
      ffn: { type: 'string' },
      context: { type: 'string' },
      type: { type: 'string' },
      seed: { type: 'string' },
      name: { type: 'string' },
      'text-only': { type: 'boolean' },
      help: { type: 'boolean' },
    },
  });
  if (values.help || !values.out) {
    console.log(USAGE);
    process.exitCode = values.help ? 0 : 1;
    return;
  }
  const type = values.type ?? DEFAULT_SHAPE.type;
  if (type !== 'f16' && type !== 'f32' && type !== 'q8_0') {
    throw new Error(`--type must be f16, f32 or q8_0, not ${type}`);
  }
  const number = (text: string | undefined, fallback: number) => (text === undefined ? fallback : Number(text));
  await makeModel(
    values.out,
    {
      dim: number(values.dim, DEFAULT_SHAPE.dim),
      layers: number(values.layers, DEFAULT_SHAPE.layers),
      heads: number(values.heads, DEFAULT_SHAPE.heads),
      kvHeads: number(values['kv-heads'], DEFAULT_SHAPE.kvHeads),
      ffn: number(values.ffn, DEFAULT_SHAPE.ffn),
      context: number(values.context, DEFAULT_SHAPE.context),
      seed: number(values.seed, DEFAULT_SHAPE.seed),
      type,
      ...(values.name === undefined ? {} : { name: values.name }),
    },
    { textOnly: values['text-only'] ?? false },
  );
  console.log(`wrote ${values.out}`);
}

if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(process.argv[1]).href) {
  main().catch((error: unknown) => {
    console.error(error instanceof Error ? error.message : error);
    process.exitCode = 1;
  });
}
