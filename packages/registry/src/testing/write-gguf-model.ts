import { mkdir, truncate, writeFile } from 'node:fs/promises';
import { dirname } from 'node:path';
import { GGUFValueType, serializeGgufMetadata } from '@huggingface/gguf';
import type { GGUFTypedMetadata, MetadataValue } from '@huggingface/gguf';

export interface GgufModelOptions {
  /** `general.architecture`: what the registry matches against a manifest's architectures. */
  architecture: string;
  name?: string;
  /** `tokenizer.chat_template` (Jinja). */
  chatTemplate?: string;
  /** `tokenizer.ggml.tokens`; default `['<unk>', '<s>', '</s>']`. */
  tokens?: string[];
  /** Default 1 (`<s>` in the default tokens). */
  bosTokenId?: number;
  /** Default 2 (`</s>` in the default tokens). */
  eosTokenId?: number;
  /** `<arch>.context_length`; default 2048. */
  contextLength?: number;
  /** `<arch>.block_count`, `.embedding_length`, `.attention.head_count`, `.attention.head_count_kv`: written when given. */
  blockCount?: number;
  embeddingLength?: number;
  headCount?: number;
  headCountKv?: number;
  /** More metadata: numbers are written as UINT32, lists of numbers as arrays of UINT32, strings as strings. */
  metadata?: Record<string, number | number[] | string>;
  /**
   * Zero bytes of tensor data after the header, so that the VRAM formula sees weights of this size. The
   * file is extended sparsely: a "16 GB" model costs no disk.
   */
  tensorDataBytes?: number;
}

/**
 * Writes a GGUF file that holds metadata and no tensors: enough for the registry to resolve, admit and
 * hand it to an engine that does not read weights (the echo test engine). Creates missing folders.
 */
export async function writeGgufModel(path: string, options: GgufModelOptions): Promise<void> {
  const arch = options.architecture;
  const entries: Record<string, { value: MetadataValue; type: GGUFValueType; subType?: GGUFValueType }> = {
    'general.architecture': { value: arch, type: GGUFValueType.STRING },
    [`${arch}.context_length`]: { value: options.contextLength ?? 2048, type: GGUFValueType.UINT32 },
    'tokenizer.ggml.model': { value: 'llama', type: GGUFValueType.STRING },
    'tokenizer.ggml.tokens': {
      value: options.tokens ?? ['<unk>', '<s>', '</s>'],
      type: GGUFValueType.ARRAY,
      subType: GGUFValueType.STRING,
    },
    'tokenizer.ggml.bos_token_id': { value: options.bosTokenId ?? 1, type: GGUFValueType.UINT32 },
    'tokenizer.ggml.eos_token_id': { value: options.eosTokenId ?? 2, type: GGUFValueType.UINT32 },
  };
  const optional: [string, string | number | undefined, GGUFValueType][] = [
    ['general.name', options.name, GGUFValueType.STRING],
    ['tokenizer.chat_template', options.chatTemplate, GGUFValueType.STRING],
    [`${arch}.block_count`, options.blockCount, GGUFValueType.UINT32],
    [`${arch}.embedding_length`, options.embeddingLength, GGUFValueType.UINT32],
    [`${arch}.attention.head_count`, options.headCount, GGUFValueType.UINT32],
    [`${arch}.attention.head_count_kv`, options.headCountKv, GGUFValueType.UINT32],
  ];
  for (const [key, value, type] of optional) {
    if (value !== undefined) entries[key] = { value, type };
  }
  for (const [key, value] of Object.entries(options.metadata ?? {})) {
    entries[key] = Array.isArray(value)
      ? { value, type: GGUFValueType.ARRAY, subType: GGUFValueType.UINT32 }
      : { value, type: typeof value === 'string' ? GGUFValueType.STRING : GGUFValueType.UINT32 };
  }
  const metadata = {
    version: { value: 3, type: GGUFValueType.UINT32 },
    tensor_count: { value: 0n, type: GGUFValueType.UINT64 },
    kv_count: { value: BigInt(Object.keys(entries).length), type: GGUFValueType.UINT64 },
    ...entries,
  } as GGUFTypedMetadata;
  const header = serializeGgufMetadata(metadata);
  await mkdir(dirname(path), { recursive: true });
  await writeFile(path, header);
  if (options.tensorDataBytes) await truncate(path, header.length + options.tensorDataBytes);
}
