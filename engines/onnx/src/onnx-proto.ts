// ONNX's protobuf encoding of a model, through protobufjs and the part of onnx.proto the maker writes
// (proto/onnx.proto).
import { readFileSync } from 'node:fs';

import protobuf from 'protobufjs';

const root = protobuf.parse(readFileSync(new URL('../proto/onnx.proto', import.meta.url), 'utf8')).root;
const ModelProto = root.lookupType('onnx.ModelProto');

/** TensorProto.DataType */
export const DataType = { FLOAT: 1, INT64: 7, BOOL: 9, FLOAT16: 10 } as const;
/** AttributeProto.AttributeType */
export const AttributeType = { FLOAT: 1, INT: 2, INTS: 7 } as const;

export interface Attribute {
  name: string;
  type: number;
  f?: number;
  i?: number;
  ints?: number[];
}

export interface Node {
  opType: string;
  input: string[];
  output: string[];
  name: string;
  attribute: Attribute[];
}

export interface Tensor {
  name: string;
  dims: number[];
  dataType: number;
  rawData: Uint8Array;
}

export interface ValueInfo {
  name: string;
  elemType: number;
  /** A number for a fixed dimension, a name for a symbolic one. */
  shape: (number | string)[];
}

export interface Graph {
  name: string;
  nodes: Node[];
  initializers: Tensor[];
  inputs: ValueInfo[];
  outputs: ValueInfo[];
}

function valueInfo(value: ValueInfo) {
  return {
    name: value.name,
    type: {
      tensorType: {
        elemType: value.elemType,
        shape: { dim: value.shape.map((d) => (typeof d === 'number' ? { dimValue: d } : { dimParam: d })) },
      },
    },
  };
}

/** The bytes of an ONNX model (IR version 8) holding `graph`, for the default operator set `opset`. */
export function encodeModel(graph: Graph, opset: number): Uint8Array {
  const message = ModelProto.fromObject({
    irVersion: 8,
    producerName: 'llm-node engine-onnx model maker',
    opsetImport: [{ domain: '', version: opset }],
    graph: {
      name: graph.name,
      node: graph.nodes,
      initializer: graph.initializers,
      input: graph.inputs.map(valueInfo),
      output: graph.outputs.map(valueInfo),
    },
  });
  return ModelProto.encode(message).finish();
}
