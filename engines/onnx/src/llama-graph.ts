// A Llama-style decoder as an ONNX graph of standard operators (opset 17), in the layout ONNX Runtime GenAI's
// model builder and Optimum export: input_ids, attention_mask, position_ids and past_key_values.N.key/value in,
// logits and present.N.key/value out. RMSNorm, rotary position embeddings (non-interleaved halves, as Hugging
// Face's Llama), grouped-query attention with a causal and padding mask, a SwiGLU MLP and an untied lm_head.
import { AttributeType, type Attribute, DataType, type Graph, type Node, type Tensor } from './onnx-proto.js';

export interface LlamaShape {
  dim: number;
  layers: number;
  heads: number;
  kvHeads: number;
  ffn: number;
  vocab: number;
  ropeTheta: number;
  rmsEps: number;
  /** The type of the KV cache and logits the graph exchanges; it computes in float32 either way. DirectML
   * exports exchange float16. */
  ioType: 'float32' | 'float16';
}

export const OPSET = 17;

/** Weights by name, row-major, as the graph's MatMuls take them: [inputs, outputs]. */
export type LlamaWeights = Map<string, Float32Array>;

/** The weight names and shapes of a model of this shape, in a fixed order (the maker draws them in it). */
export function weightShapes(s: LlamaShape): [string, number[]][] {
  const headDim = s.dim / s.heads;
  const shapes: [string, number[]][] = [['embed_tokens', [s.vocab, s.dim]]];
  for (let l = 0; l < s.layers; l++) {
    shapes.push(
      [`layers.${l}.input_norm`, [s.dim]],
      [`layers.${l}.q_proj`, [s.dim, s.heads * headDim]],
      [`layers.${l}.k_proj`, [s.dim, s.kvHeads * headDim]],
      [`layers.${l}.v_proj`, [s.dim, s.kvHeads * headDim]],
      [`layers.${l}.o_proj`, [s.heads * headDim, s.dim]],
      [`layers.${l}.post_attention_norm`, [s.dim]],
      [`layers.${l}.gate_proj`, [s.dim, s.ffn]],
      [`layers.${l}.up_proj`, [s.dim, s.ffn]],
      [`layers.${l}.down_proj`, [s.ffn, s.dim]],
    );
  }
  shapes.push(['norm', [s.dim]], ['lm_head', [s.dim, s.vocab]]);
  return shapes;
}

class Builder {
  readonly nodes: Node[] = [];
  readonly initializers: Tensor[] = [];
  private count = 0;

  /** Adds a node; returns its outputs' names (`outputs` names them, else they are numbered). */
  op(opType: string, input: string[], attributes: Attribute[] = [], outputs?: string[]): string[] {
    const name = `${opType}_${this.count++}`;
    const output = outputs ?? [`${name}_out`];
    this.nodes.push({ opType, input, output, name, attribute: attributes });
    return output;
  }

  one(opType: string, input: string[], attributes: Attribute[] = []): string {
    return this.op(opType, input, attributes)[0]!;
  }

  floats(name: string, dims: number[], values: Float32Array): string {
    this.initializers.push({
      name,
      dims,
      dataType: DataType.FLOAT,
      rawData: new Uint8Array(values.buffer, values.byteOffset, values.byteLength),
    });
    return name;
  }

  ints(name: string, values: number[]): string {
    const data = BigInt64Array.from(values.map(BigInt));
    this.initializers.push({ name, dims: [values.length], dataType: DataType.INT64, rawData: new Uint8Array(data.buffer) });
    return name;
  }

  scalar(name: string, value: number, dataType: number): string {
    const data = dataType === DataType.INT64 ? new BigInt64Array([BigInt(value)]) : new Float32Array([value]);
    this.initializers.push({ name, dims: [], dataType, rawData: new Uint8Array(data.buffer) });
    return name;
  }
}

const int = (name: string, i: number): Attribute => ({ name, type: AttributeType.INT, i });
const ints = (name: string, values: number[]): Attribute => ({ name, type: AttributeType.INTS, ints: values });

export function llamaGraph(s: LlamaShape, weights: LlamaWeights): Graph {
  const headDim = s.dim / s.heads;
  const group = s.heads / s.kvHeads;
  const b = new Builder();
  for (const [name, dims] of weightShapes(s)) b.floats(name, dims, weights.get(name)!);

  const axis0 = b.ints('axis_0', [0]);
  const axis1 = b.ints('axis_1', [1]);
  const axis2 = b.ints('axis_2', [2]);
  const axes12 = b.ints('axes_1_2', [1, 2]);
  const eps = b.scalar('rms_eps', s.rmsEps, DataType.FLOAT);
  const rmsNorm = (x: string, weight: string) => {
    const meanSquare = b.one('ReduceMean', [b.one('Mul', [x, x])], [ints('axes', [-1]), int('keepdims', 1)]);
    return b.one('Mul', [b.one('Div', [x, b.one('Sqrt', [b.one('Add', [meanSquare, eps])])]), weight]);
  };

  // Rotary embeddings: cos and sin of position x inverse frequency, [batch, 1, sequence, head_dim].
  const invFreq = new Float32Array(headDim / 2).map((_, i) => s.ropeTheta ** (-(2 * i) / headDim));
  const freqs = b.one('Mul', [
    b.one('Unsqueeze', [b.one('Cast', ['position_ids'], [int('to', DataType.FLOAT)]), axis2]),
    b.floats('inv_freq', [headDim / 2], invFreq),
  ]);
  const angles = b.one('Concat', [freqs, freqs], [int('axis', -1)]);
  const cos = b.one('Unsqueeze', [b.one('Cos', [angles]), axis1]);
  const sin = b.one('Unsqueeze', [b.one('Sin', [angles]), axis1]);
  const halfDim = b.ints('half', [headDim / 2]);
  const full = b.ints('full', [headDim]);
  const axis3 = b.ints('axis_3', [3]);
  const zero = b.ints('zero', [0]);
  const rope = (x: string) => {
    const first = b.one('Slice', [x, zero, halfDim, axis3]);
    const second = b.one('Slice', [x, halfDim, full, axis3]);
    const rotated = b.one('Concat', [b.one('Neg', [second]), first], [int('axis', 3)]);
    return b.one('Add', [b.one('Mul', [x, cos]), b.one('Mul', [rotated, sin])]);
  };

  // The mask: query i (at absolute position past + i) sees key j when j <= past + i and attention_mask[j] is 1.
  const total = b.one('Squeeze', [b.one('Shape', ['attention_mask'], [int('start', 1), int('end', 2)]), axis0]);
  const sequence = b.one('Squeeze', [b.one('Shape', ['input_ids'], [int('start', 1), int('end', 2)]), axis0]);
  const past = b.one('Sub', [total, sequence]);
  const zeroScalar = b.scalar('zero_scalar', 0, DataType.INT64);
  const oneScalar = b.scalar('one_scalar', 1, DataType.INT64);
  const keyPositions = b.one('Range', [zeroScalar, total, oneScalar]);
  const queryPositions = b.one('Unsqueeze', [b.one('Range', [past, total, oneScalar]), axis1]);
  const causal = b.one('LessOrEqual', [keyPositions, queryPositions]);
  const padding = b.one('Unsqueeze', [b.one('Cast', ['attention_mask'], [int('to', DataType.BOOL)]), axes12]);
  const allowed = b.one('And', [causal, padding]);
  const maskBias = b.one('Where', [allowed, b.scalar('no_bias', 0, DataType.FLOAT), b.scalar('masked_bias', -1e9, DataType.FLOAT)]);

  const headsShape = (n: number) => b.ints(`heads_${n}_shape`, [0, 0, n, headDim]);
  const qShape = headsShape(s.heads);
  const kvShape = s.kvHeads === s.heads ? qShape : headsShape(s.kvHeads);
  const expandShape = b.ints('group_expand', [1, 1, group, 1, 1]);
  const groupedShape = b.ints('grouped_shape', [0, s.heads, -1, headDim]);
  const mergedShape = b.ints('merged_shape', [0, 0, s.heads * headDim]);
  const scale = b.scalar('attention_scale', 1 / Math.sqrt(headDim), DataType.FLOAT);
  const heads = (x: string, shape: string) => b.one('Transpose', [b.one('Reshape', [x, shape])], [ints('perm', [0, 2, 1, 3])]);
  // [batch, kv_heads, total, head_dim] -> [batch, heads, total, head_dim]: each KV head serves `group` query heads.
  const repeatKv = (x: string) =>
    group === 1 ? x : b.one('Reshape', [b.one('Expand', [b.one('Unsqueeze', [x, axis2]), expandShape]), groupedShape]);

  // The past and the new positions, named as the present output; with float16 I/O, cast at the graph's edge.
  const half = s.ioType === 'float16';
  const cache = (past: string, current: string, present: string) => {
    const input = half ? b.one('Cast', [past], [int('to', DataType.FLOAT)]) : past;
    const joined = b.op('Concat', [input, current], [int('axis', 2)], half ? undefined : [present])[0]!;
    if (half) b.op('Cast', [joined], [int('to', DataType.FLOAT16)], [present]);
    return joined;
  };

  let x = b.one('Gather', ['embed_tokens', 'input_ids']);
  for (let l = 0; l < s.layers; l++) {
    const p = `layers.${l}`;
    const h = rmsNorm(x, `${p}.input_norm`);
    const q = rope(heads(b.one('MatMul', [h, `${p}.q_proj`]), qShape));
    const k = rope(heads(b.one('MatMul', [h, `${p}.k_proj`]), kvShape));
    const v = heads(b.one('MatMul', [h, `${p}.v_proj`]), kvShape);
    const keys = cache(`past_key_values.${l}.key`, k, `present.${l}.key`);
    const values = cache(`past_key_values.${l}.value`, v, `present.${l}.value`);
    const scores = b.one('Add', [
      b.one('Mul', [b.one('MatMul', [q, b.one('Transpose', [repeatKv(keys)], [ints('perm', [0, 1, 3, 2])])]), scale]),
      maskBias,
    ]);
    const attention = b.one('MatMul', [b.one('Softmax', [scores], [int('axis', -1)]), repeatKv(values)]);
    const merged = b.one('Reshape', [b.one('Transpose', [attention], [ints('perm', [0, 2, 1, 3])]), mergedShape]);
    x = b.one('Add', [x, b.one('MatMul', [merged, `${p}.o_proj`])]);
    const m = rmsNorm(x, `${p}.post_attention_norm`);
    const gate = b.one('MatMul', [m, `${p}.gate_proj`]);
    const up = b.one('MatMul', [m, `${p}.up_proj`]);
    const act = b.one('Mul', [b.one('Mul', [gate, b.one('Sigmoid', [gate])]), up]);
    x = b.one('Add', [x, b.one('MatMul', [act, `${p}.down_proj`])]);
  }
  const logits = b.op('MatMul', [rmsNorm(x, 'norm'), 'lm_head'], [], half ? undefined : ['logits'])[0]!;
  if (half) b.op('Cast', [logits], [int('to', DataType.FLOAT16)], ['logits']);

  const ioType = half ? DataType.FLOAT16 : DataType.FLOAT;
  const cacheInfo = (name: string, length: string) => ({ name, elemType: ioType, shape: ['batch', s.kvHeads, length, headDim] });
  return {
    name: 'llama',
    nodes: b.nodes,
    initializers: b.initializers,
    inputs: [
      { name: 'input_ids', elemType: DataType.INT64, shape: ['batch', 'sequence'] },
      { name: 'attention_mask', elemType: DataType.INT64, shape: ['batch', 'total_sequence'] },
      { name: 'position_ids', elemType: DataType.INT64, shape: ['batch', 'sequence'] },
      ...Array.from({ length: s.layers }, (_, l) => [
        cacheInfo(`past_key_values.${l}.key`, 'past_sequence'),
        cacheInfo(`past_key_values.${l}.value`, 'past_sequence'),
      ]).flat(),
    ],
    outputs: [
      { name: 'logits', elemType: ioType, shape: ['batch', 'sequence', s.vocab] },
      ...Array.from({ length: s.layers }, (_, l) => [
        cacheInfo(`present.${l}.key`, 'total_sequence'),
        cacheInfo(`present.${l}.value`, 'total_sequence'),
      ]).flat(),
    ],
  };
}
