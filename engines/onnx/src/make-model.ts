// The model maker: a small Llama-style decoder as an ONNX model folder (model.onnx, config.json,
// tokenizer.json, tokenizer_config.json) with seeded random weights and the real Llama 3 tokenizer, for tests,
// demos and the benchmark. Nothing is downloaded: the vocabulary comes from the llama.cpp source that
// @llm-node/engine-llama-cpp's build extracts.
import { mkdir, writeFile } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { parseArgs } from 'node:util';

import { gguf } from '@huggingface/gguf';
import { mulberry32 } from '@llm-node/engine-llama-cpp';

import { type LlamaShape, llamaGraph, OPSET, weightShapes } from './llama-graph.js';
import { encodeModel } from './onnx-proto.js';
import { llamaTokenizerJson } from './tokenizer-json.js';

export interface OnnxModelShape {
  dim: number;
  layers: number;
  heads: number;
  kvHeads: number;
  ffn: number;
  /** max_position_embeddings: the context a load gets unless it asks for less. */
  context: number;
  seed: number;
  /** The type of the KV cache and logits the graph exchanges (float16 as DirectML exports do); weights and
   * arithmetic stay float32. */
  ioType: 'float32' | 'float16';
}

export const DEFAULT_ONNX_SHAPE: OnnxModelShape = {
  dim: 64,
  layers: 2,
  heads: 4,
  kvHeads: 2,
  ffn: 256,
  context: 8192,
  seed: 1,
  ioType: 'float32',
};

// Llama 3 Instruct's chat template: the prompt of a conversation depends on nothing else (Llama 3.2's adds
// today's date), so tests can write it out.
const CHAT_TEMPLATE =
  "{% set loop_messages = messages %}{% for message in loop_messages %}{% set content = '<|start_header_id|>' + message['role'] + '<|end_header_id|>\\n\\n'+ message['content'] | trim + '<|eot_id|>' %}{% if loop.index0 == 0 %}{% set content = bos_token + content %}{% endif %}{{ content }}{% endfor %}{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}{% endif %}";

// Llama 3's end-of-generation tokens: <|end_of_text|>, <|eom_id|>, <|eot_id|>.
const EOS_TOKEN_IDS = [128001, 128008, 128009];

const llamaSource = join(dirname(createRequire(import.meta.url).resolve('@llm-node/engine-llama-cpp')), '..', 'build', 'llama.cpp');
/** llama.cpp's Llama 3 vocabulary file, and its reference tokenizations beside it (.inp, and .out in its git). */
export const LLAMA3_VOCABULARY = join(llamaSource, 'models', 'ggml-vocab-llama-bpe.gguf');

/** Writes the model folder `dir`. The same shape and seed give the same files. */
export async function makeOnnxModel(dir: string, shape: Partial<OnnxModelShape> = {}): Promise<void> {
  const s: OnnxModelShape = { ...DEFAULT_ONNX_SHAPE, ...shape };
  if (s.dim % s.heads !== 0 || s.heads % s.kvHeads !== 0 || (s.dim / s.heads) % 2 !== 0) {
    throw new Error('dim must be a multiple of heads, heads of kvHeads, and the head size even');
  }
  if (s.ioType !== 'float32' && s.ioType !== 'float16') throw new Error(`ioType must be float32 or float16, not ${s.ioType}`);
  const parsed = await gguf(LLAMA3_VOCABULARY, { allowLocalFile: true, typedMetadata: true }).catch((error: unknown) => {
    throw new Error(`cannot read ${LLAMA3_VOCABULARY}; build @llm-node/engine-llama-cpp first`, { cause: error });
  });
  const { tokenizer, bosToken, vocabSize } = llamaTokenizerJson(parsed.typedMetadata);
  const graphShape: LlamaShape = { ...s, vocab: vocabSize, ropeTheta: 500000, rmsEps: 1e-5 };

  await mkdir(dir, { recursive: true });
  await writeFile(join(dir, 'model.onnx'), encodeModel(llamaGraph(graphShape, randomWeights(graphShape, s.seed)), OPSET));
  await writeFile(join(dir, 'tokenizer.json'), JSON.stringify(tokenizer));
  await writeJson(join(dir, 'config.json'), {
    architectures: ['LlamaForCausalLM'],
    model_type: 'llama',
    hidden_size: s.dim,
    intermediate_size: s.ffn,
    num_hidden_layers: s.layers,
    num_attention_heads: s.heads,
    num_key_value_heads: s.kvHeads,
    head_dim: s.dim / s.heads,
    vocab_size: vocabSize,
    max_position_embeddings: s.context,
    rms_norm_eps: graphShape.rmsEps,
    rope_theta: graphShape.ropeTheta,
    bos_token_id: 128000,
    eos_token_id: EOS_TOKEN_IDS,
    tie_word_embeddings: false,
    torch_dtype: s.ioType,
  });
  await writeJson(join(dir, 'tokenizer_config.json'), {
    bos_token: bosToken,
    eos_token: '<|eot_id|>',
    add_bos_token: true,
    model_max_length: s.context,
    chat_template: CHAT_TEMPLATE,
  });
}

async function writeJson(path: string, value: unknown): Promise<void> {
  await writeFile(path, `${JSON.stringify(value, null, 2)}\n`);
}

/** Weights drawn uniformly in ±1/sqrt(inputs) (the embeddings in ±1), norms of 1. */
function randomWeights(s: LlamaShape, seed: number): Map<string, Float32Array> {
  const random = mulberry32(seed);
  const weights = new Map<string, Float32Array>();
  for (const [name, dims] of weightShapes(s)) {
    const values = new Float32Array(dims.reduce((a, b) => a * b, 1));
    if (dims.length === 1) {
      values.fill(1);
    } else {
      const scale = name === 'embed_tokens' ? 1 : 1 / Math.sqrt(dims[0]!);
      for (let i = 0; i < values.length; i++) values[i] = (random() * 2 - 1) * scale;
    }
    weights.set(name, values);
  }
  return weights;
}

const USAGE = `usage: node make-model.js --out <folder> [--dim 64] [--layers 2] [--heads 4] [--kv-heads 2] [--ffn 256]
  [--context 8192] [--seed 1] [--io-type float32|float16]`;

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
      seed: { type: 'string' },
      'io-type': { type: 'string' },
    },
  });
  if (values.out === undefined) {
    console.error(USAGE);
    process.exit(2);
  }
  const number = (text: string | undefined) => (text === undefined ? undefined : Number(text));
  const shape = Object.fromEntries(
    Object.entries({
      dim: number(values.dim),
      layers: number(values.layers),
      heads: number(values.heads),
      kvHeads: number(values['kv-heads']),
      ffn: number(values.ffn),
      context: number(values.context),
      seed: number(values.seed),
      ioType: values['io-type'],
    }).filter(([, v]) => v !== undefined),
  );
  await makeOnnxModel(values.out, shape);
}

if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(process.argv[1]).href) {
  await main();
}
