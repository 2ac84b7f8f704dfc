// Greedy decoding driven by ONNX Runtime's own JavaScript binding (onnxruntime-node) on a model folder's graph,
// written here independently of the plugin: the reference the plugin's output is checked against, and the
// baseline of the benchmark.
import { join } from 'node:path';

import * as ort from 'onnxruntime-node';

export interface ReferenceDecoder {
  /** The `count` tokens greedy decoding takes after `prompt` (token ids), without stopping at any token. */
  greedy(prompt: number[], count: number): Promise<number[]>;
  release(): Promise<void>;
}

export async function openReference(modelDir: string, options: { threads?: number } = {}): Promise<ReferenceDecoder> {
  const session = await ort.InferenceSession.create(join(modelDir, 'model.onnx'), {
    executionProviders: ['cpu'],
    intraOpNumThreads: options.threads ?? 0,
  });
  const pasts = session.inputNames.filter((name) => name.startsWith('past_key_values.'));
  const metadata = session.inputMetadata.find((m) => m.name === pasts[0]);
  if (metadata === undefined || !metadata.isTensor) throw new Error('the graph has no past_key_values inputs');
  const [, kvHeads, , headDim] = metadata.shape as number[];
  const half = metadata.type === 'float16';

  return {
    async greedy(prompt, count) {
      let cache: Record<string, ort.Tensor> = Object.fromEntries(
        pasts.map((name) => [
          name,
          half
            ? new ort.Tensor('float16', new Uint16Array(0), [1, kvHeads!, 0, headDim!])
            : new ort.Tensor('float32', new Float32Array(0), [1, kvHeads!, 0, headDim!]),
        ]),
      );
      let length = 0;
      let step = prompt;
      const out: number[] = [];
      while (out.length < count) {
        const total = length + step.length;
        const feeds: Record<string, ort.Tensor> = {
          ...cache,
          input_ids: new ort.Tensor('int64', BigInt64Array.from(step.map(BigInt)), [1, step.length]),
          attention_mask: new ort.Tensor('int64', new BigInt64Array(total).fill(1n), [1, total]),
          position_ids: new ort.Tensor('int64', BigInt64Array.from(step.map((_, i) => BigInt(length + i))), [1, step.length]),
        };
        const results = await session.run(feeds);
        const logits = results['logits']!.data as Float32Array | Uint16Array;
        const vocab = logits.length / step.length;
        const row = logits.subarray(logits.length - vocab);
        const last = row instanceof Uint16Array ? Float32Array.from(row, halfToFloat) : row;
        let best = 0;
        for (let i = 1; i < vocab; i++) if (last[i]! > last[best]!) best = i;
        out.push(best);
        cache = Object.fromEntries(pasts.map((name) => [name, results[name.replace('past_key_values.', 'present.')]!]));
        length = total;
        step = [best];
      }
      return out;
    },
    release: () => session.release(),
  };
}

// IEEE 754 half precision to a number: float16 tensors come from onnxruntime-node as their raw 16-bit words.
function halfToFloat(bits: number): number {
  const sign = bits & 0x8000 ? -1 : 1;
  const exponent = (bits >> 10) & 0x1f;
  const mantissa = bits & 0x3ff;
  if (exponent === 0) return sign * mantissa * 2 ** -24;
  if (exponent === 0x1f) return mantissa === 0 ? sign * Number.POSITIVE_INFINITY : Number.NaN;
  return sign * (1 + mantissa / 1024) * 2 ** (exponent - 15);
}
