import { readFile, stat } from 'node:fs/promises';
import { basename, join } from 'node:path';
import type { ModelFormat } from '@llm-node/manifest';
import { NodeError } from './errors.js';
import { ggufHyperparameterProblem } from './gguf-checks.js';
import { GgufFormatError, GgufTruncatedError, type GgufValue, readGgufHeaderFrom } from './gguf-header.js';
import type { ModelCandidate } from './model-files.js';

/**
 * What the host knows about a model before any engine opens it: the architecture for resolution, the
 * shape for the VRAM formula, and the tokenizer strings for chat templates. Null: the model does not say.
 */
export interface ModelInfo {
  format: ModelFormat;
  architecture: string;
  /** `general.name` (GGUF); null for safetensors and onnx. */
  name: string | null;
  quantization: string | null;
  /** The context length the model was trained for. */
  trainedContextLength: number | null;
  blockCount: number | null;
  embeddingLength: number | null;
  headCount: number | null;
  /** Key/value heads (grouped-query attention); per-layer lists count their largest entry. */
  headCountKv: number | null;
  /** Per-head key and value widths when the model states them; else embeddingLength / headCount. */
  keyLength: number | null;
  valueLength: number | null;
  vocabSize: number | null;
  /** Bytes of tensor data: the GGUF data sections (all shards), the .safetensors files, or model.onnx and its data. */
  weightsBytes: number;
  /** The Jinja chat template (GGUF `tokenizer.chat_template`, or tokenizer_config.json / chat_template.jinja). */
  chatTemplate: string | null;
  bosToken: string | null;
  eosToken: string | null;
  /** Whether the tokenizer adds BOS itself (GGUF `tokenizer.ggml.add_bos_token`, tokenizer_config `add_bos_token`). */
  addBosToken: boolean | null;
}

/** Reads a candidate's metadata from its own files; a truncated or garbage file is a 422 `model_corrupt`. */
export async function readModelInfo(candidate: ModelCandidate): Promise<ModelInfo> {
  return candidate.format === 'gguf' ? readGgufInfo(candidate) : readFolderInfo(candidate);
}

/**
 * readModelInfo() that remembers what it read: a model loaded again (after an idle unload, or when its
 * engine restarted) is not parsed again while its files keep their size and modification time. A GGUF
 * header with a 128k-token vocabulary takes over a second to parse.
 */
export function modelInfoReader(): (candidate: ModelCandidate) => Promise<ModelInfo> {
  // Promises, so that a load asking while the start-up listing reads the same file waits for that one read.
  const read = new Map<string, { version: string; info: Promise<ModelInfo> }>();
  return async (candidate) => {
    const stats = await Promise.all(candidate.files.map((file) => stat(file).catch(() => null)));
    const version = stats.map((s) => (s === null ? 'missing' : `${s.size}:${s.mtimeMs}`)).join('|');
    const known = read.get(candidate.path);
    if (known?.version === version) return known.info;
    const info = readModelInfo(candidate);
    read.set(candidate.path, { version, info });
    info.catch(() => read.get(candidate.path)?.info === info && read.delete(candidate.path));
    return info;
  };
}

type GgufMetadata = Record<string, GgufValue>;

async function readGgufInfo(candidate: ModelCandidate): Promise<ModelInfo> {
  const [first, ...rest] = await Promise.all(candidate.files.map(readGgufHeader));
  const metadata = first!.metadata;
  const architecture = metadata['general.architecture'];
  if (typeof architecture !== 'string' || architecture.length === 0) {
    throw invalidModel(`${basename(candidate.path)} has no general.architecture in its GGUF metadata`);
  }
  const problem = ggufHyperparameterProblem(metadata, architecture);
  if (problem !== null) throw corrupt(`${basename(candidate.path)} cannot be loaded: ${problem}`);
  const arch = (key: string) => numberAt(metadata, `${architecture}.${key}`);
  const tokens = metadata['tokenizer.ggml.tokens'];
  const tokenAt = (key: string): string | null => first!.tokenTexts.get(numberAt(metadata, key) ?? -1) ?? null;
  const chatTemplate = metadata['tokenizer.chat_template'];
  const name = metadata['general.name'];
  return {
    format: 'gguf',
    architecture,
    name: typeof name === 'string' ? name : null,
    quantization: candidate.quantization,
    trainedContextLength: arch('context_length'),
    blockCount: arch('block_count'),
    embeddingLength: arch('embedding_length'),
    headCount: arch('attention.head_count'),
    headCountKv: arch('attention.head_count_kv') ?? arch('attention.head_count'),
    keyLength: arch('attention.key_length'),
    valueLength: arch('attention.value_length'),
    vocabSize: arch('vocab_size') ?? (typeof tokens === 'object' && 'length' in tokens ? tokens.length : null),
    weightsBytes: [first!, ...rest].reduce((sum, header) => sum + header.dataBytes, 0),
    chatTemplate: typeof chatTemplate === 'string' ? chatTemplate : null,
    bosToken: tokenAt('tokenizer.ggml.bos_token_id'),
    eosToken: tokenAt('tokenizer.ggml.eos_token_id'),
    addBosToken: booleanOrNull(metadata['tokenizer.ggml.add_bos_token']),
  };
}

/**
 * Reads one GGUF file's header (gguf-header.ts) and checks its tensor data against the file's size: a file
 * cut short loses its last tensors first.
 */
async function readGgufHeader(
  path: string,
): Promise<{ metadata: GgufMetadata; tokenTexts: ReadonlyMap<number, string>; dataBytes: number }> {
  const size = await fileSize(path);
  let header: Awaited<ReturnType<typeof readGgufHeaderFrom>>;
  try {
    header = await readGgufHeaderFrom(path);
  } catch (error) {
    if (error instanceof GgufTruncatedError) throw corrupt(`${basename(path)} is truncated: ${error.message}`, error);
    if (!(error instanceof GgufFormatError)) throw error;
    throw corrupt(`${basename(path)} is not a readable GGUF file: ${error.message}`, error);
  }
  const dataBytes = size - header.tensorDataOffset;
  if (dataBytes < 0) {
    throw corrupt(`${basename(path)} is truncated: its GGUF header needs ${header.tensorDataOffset} bytes, the file has ${size}`);
  }
  if (header.lastTensorOffset >= dataBytes) {
    throw corrupt(`${basename(path)} is truncated: tensor data ends before its last tensor starts`);
  }
  return { metadata: header.metadata, tokenTexts: header.tokenTexts, dataBytes };
}

/** A safetensors or ONNX folder: Hugging Face's config.json, or for ONNX GenAI's genai_config.json instead. */
async function readFolderInfo(candidate: ModelCandidate): Promise<ModelInfo> {
  const config =
    (await readJsonObject(join(candidate.path, 'config.json'))) ??
    (candidate.format === 'onnx' ? genaiAsConfig(await readJsonObject(join(candidate.path, 'genai_config.json'))) : null);
  if (config === null) {
    const wanted = candidate.format === 'onnx' ? 'config.json or genai_config.json' : 'config.json';
    throw invalidModel(`${basename(candidate.path)}/${wanted} is missing`);
  }
  const architectures = config['architectures'];
  const architecture =
    typeof config['model_type'] === 'string'
      ? config['model_type']
      : Array.isArray(architectures) && typeof architectures[0] === 'string'
        ? architectures[0]
        : null;
  if (architecture === null) {
    throw invalidModel(`${basename(candidate.path)}/config.json names no model_type or architectures`);
  }
  const tokenizerConfig = (await readJsonObject(join(candidate.path, 'tokenizer_config.json'))) ?? {};
  const sizes = await Promise.all(candidate.files.map(fileSize));
  const headCount = positiveInteger(config['num_attention_heads']);
  const headDim = positiveInteger(config['head_dim']);
  return {
    format: candidate.format,
    architecture,
    name: null,
    quantization: null,
    trainedContextLength: positiveInteger(config['max_position_embeddings']),
    blockCount: positiveInteger(config['num_hidden_layers']),
    embeddingLength: positiveInteger(config['hidden_size']),
    headCount,
    headCountKv: positiveInteger(config['num_key_value_heads']) ?? headCount,
    keyLength: headDim,
    valueLength: headDim,
    vocabSize: positiveInteger(config['vocab_size']),
    weightsBytes: sizes.reduce((a, b) => a + b, 0),
    chatTemplate: templateOf(tokenizerConfig['chat_template']) ?? (await readTextOrNull(join(candidate.path, 'chat_template.jinja'))),
    bosToken: tokenText(tokenizerConfig['bos_token']),
    eosToken: tokenText(tokenizerConfig['eos_token']),
    addBosToken: booleanOrNull(tokenizerConfig['add_bos_token']),
  };
}

// ONNX Runtime GenAI's genai_config.json says what config.json would, under other names.
function genaiAsConfig(genai: Record<string, unknown> | null): Record<string, unknown> | null {
  const model = genai?.['model'];
  if (typeof model !== 'object' || model === null) return null;
  const { type, context_length, vocab_size, decoder } = model as Record<string, unknown>;
  const d = (typeof decoder === 'object' && decoder !== null ? decoder : {}) as Record<string, unknown>;
  return {
    model_type: type,
    max_position_embeddings: context_length,
    vocab_size,
    num_hidden_layers: d['num_hidden_layers'],
    hidden_size: d['hidden_size'],
    num_attention_heads: d['num_attention_heads'],
    num_key_value_heads: d['num_key_value_heads'],
    head_dim: d['head_size'],
  };
}

// tokenizer_config.json holds either one template or a list of named ones, of which "default" is used.
function templateOf(value: unknown): string | null {
  if (typeof value === 'string') return value;
  if (!Array.isArray(value)) return null;
  const named = value.filter(
    (t): t is { name: unknown; template: string } => typeof t === 'object' && t !== null && typeof t.template === 'string',
  );
  return (named.find((t) => t.name === 'default') ?? named[0])?.template ?? null;
}

// Special tokens are written as a string or as an AddedToken object ({"content": "<s>", ...}).
function tokenText(value: unknown): string | null {
  if (typeof value === 'string') return value;
  if (typeof value === 'object' && value !== null && typeof (value as { content?: unknown }).content === 'string') {
    return (value as { content: string }).content;
  }
  return null;
}

function numberAt(metadata: GgufMetadata, key: string): number | null {
  const value = metadata[key];
  if (Array.isArray(value)) {
    const numbers = value.map(toNumber).filter((n): n is number => n !== null);
    return numbers.length > 0 ? Math.max(...numbers) : null;
  }
  return toNumber(value);
}

function toNumber(value: unknown): number | null {
  if (typeof value === 'bigint') return Number(value);
  return typeof value === 'number' && Number.isFinite(value) ? value : null;
}

function booleanOrNull(value: unknown): boolean | null {
  return typeof value === 'boolean' ? value : null;
}

function positiveInteger(value: unknown): number | null {
  return typeof value === 'number' && Number.isInteger(value) && value > 0 ? value : null;
}

// config.json and tokenizer_config.json are small; anything larger is not what we are looking for.
const MAX_JSON_BYTES = 16 * 1024 * 1024;

async function readJsonObject(path: string): Promise<Record<string, unknown> | null> {
  const text = await readTextOrNull(path);
  if (text === null) return null;
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (error) {
    throw invalidModel(`${basename(path)} is not valid JSON: ${(error as Error).message}`);
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    throw invalidModel(`${basename(path)} must hold a JSON object`);
  }
  return value as Record<string, unknown>;
}

async function readTextOrNull(path: string): Promise<string | null> {
  const info = await stat(path).catch(() => null);
  if (info === null) return null;
  if (!info.isFile() || info.size > MAX_JSON_BYTES) throw invalidModel(`${basename(path)} is not a readable file under 16 MB`);
  return readFile(path, 'utf8');
}

/** The size of a model file, which must be a regular file: reading a FIFO or a device would never end. */
async function fileSize(path: string): Promise<number> {
  const info = await stat(path).catch((error: NodeJS.ErrnoException) => {
    throw new NodeError(`Model file ${basename(path)} cannot be read: ${error.code ?? error.message}`, {
      type: 'not_found_error',
      code: 'model_not_found',
      cause: error,
    });
  });
  if (!info.isFile()) throw invalidModel(`${basename(path)} is not a regular file`);
  return info.size;
}

function corrupt(message: string, cause?: unknown): NodeError {
  return new NodeError(message, { type: 'invalid_request_error', code: 'model_corrupt', status: 422, cause });
}

function invalidModel(message: string): NodeError {
  return new NodeError(message, { type: 'invalid_request_error', code: 'invalid_model', status: 422 });
}
