// A Hugging Face tokenizer.json for the Llama 3 vocabulary of a GGUF file: the byte-level BPE of Llama 3's
// own tokenizer.json (its split pattern, ignore_merges, <|begin_of_text|> added before a text), with the
// vocabulary, merges and special tokens the GGUF carries.
import type { GGUFTypedMetadata } from '@huggingface/gguf';

// The pre-tokenizer's split of Llama 3 (and of the engine's src/native/pretokenizer.cpp).
const LLAMA3_SPLIT_PATTERN =
  "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";

const CONTROL = 3; // llama.cpp's token type of special tokens (tokenizer.ggml.token_type)

export interface LlamaTokenizer {
  /** tokenizer.json's content. */
  tokenizer: unknown;
  bosToken: string;
  vocabSize: number;
}

export function llamaTokenizerJson(metadata: Record<string, GGUFTypedMetadata[string]>): LlamaTokenizer {
  const tokens = metadata['tokenizer.ggml.tokens']?.value as string[];
  const types = metadata['tokenizer.ggml.token_type']?.value as number[];
  const merges = metadata['tokenizer.ggml.merges']?.value as string[];
  const bos = Number(metadata['tokenizer.ggml.bos_token_id']?.value);
  if (!tokens || !types || !merges || !Number.isInteger(bos)) {
    throw new Error('the GGUF has no BPE vocabulary (tokenizer.ggml.tokens, token_type, merges, bos_token_id)');
  }
  const vocab: Record<string, number> = {};
  const added = [];
  for (let id = 0; id < tokens.length; id++) {
    if (types[id] === CONTROL) {
      added.push({ id, content: tokens[id]!, single_word: false, lstrip: false, rstrip: false, normalized: false, special: true });
    } else {
      vocab[tokens[id]!] = id;
    }
  }
  const bosToken = tokens[bos]!;
  const byteLevel = { type: 'ByteLevel', add_prefix_space: false, trim_offsets: true, use_regex: false };
  return {
    bosToken,
    vocabSize: tokens.length,
    tokenizer: {
      version: '1.0',
      truncation: null,
      padding: null,
      added_tokens: added,
      normalizer: null,
      pre_tokenizer: {
        type: 'Sequence',
        pretokenizers: [{ type: 'Split', pattern: { Regex: LLAMA3_SPLIT_PATTERN }, behavior: 'Isolated', invert: false }, byteLevel],
      },
      post_processor: {
        type: 'Sequence',
        processors: [
          { ...byteLevel, trim_offsets: false },
          {
            type: 'TemplateProcessing',
            single: [{ SpecialToken: { id: bosToken, type_id: 0 } }, { Sequence: { id: 'A', type_id: 0 } }],
            pair: [
              { SpecialToken: { id: bosToken, type_id: 0 } },
              { Sequence: { id: 'A', type_id: 0 } },
              { SpecialToken: { id: bosToken, type_id: 1 } },
              { Sequence: { id: 'B', type_id: 1 } },
            ],
            special_tokens: { [bosToken]: { id: bosToken, ids: [bos], tokens: [bosToken] } },
          },
        ],
      },
      decoder: byteLevel,
      model: {
        type: 'BPE',
        dropout: null,
        unk_token: null,
        continuing_subword_prefix: null,
        end_of_word_suffix: null,
        fuse_unk: false,
        byte_fallback: false,
        ignore_merges: true,
        vocab,
        merges,
      },
    },
  };
}
