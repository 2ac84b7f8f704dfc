// A graph this engine cannot drive, for the tests of its refusal: logits straight from the token embeddings,
// without a KV cache (nor attention_mask).
import { DataType, encodeModel } from './onnx-proto.js';

export function graphWithoutCache(vocab = 128256): Uint8Array {
  const embedding = new Float32Array(vocab * 4);
  return encodeModel(
    {
      name: 'no-cache',
      nodes: [{ opType: 'Gather', input: ['embed', 'input_ids'], output: ['logits'], name: 'gather', attribute: [] }],
      initializers: [{ name: 'embed', dims: [vocab, 4], dataType: DataType.FLOAT, rawData: new Uint8Array(embedding.buffer) }],
      inputs: [{ name: 'input_ids', elemType: DataType.INT64, shape: ['batch', 'sequence'] }],
      outputs: [{ name: 'logits', elemType: DataType.FLOAT, shape: ['batch', 'sequence', 4] }],
    },
    17,
  );
}
