import { open } from 'node:fs/promises';

import { GGMLQuantizationType, GGUFValueType, serializeGgufMetadata, type GGUFTypedMetadata } from '@huggingface/gguf';

/** Tensor element types the writer encodes. */
export type TensorType = 'f32' | 'f16' | 'q8_0';

/** A tensor to write: ggml dimension order (ne[0], the contiguous one, first) and its values row by row. */
export interface GgufTensor {
  name: string;
  dims: number[];
  type: TensorType;
  values: Float32Array;
}

const ALIGNMENT = 32; // GGUF's default general.alignment
const Q8_0_BLOCK = 32;

const GGML_TYPE: Record<TensorType, GGMLQuantizationType> = {
  f32: GGMLQuantizationType.F32,
  f16: GGMLQuantizationType.F16,
  q8_0: GGMLQuantizationType.Q8_0,
};

/**
 * Writes a GGUF file: @huggingface/gguf serialises the header and key-value metadata; the tensor infos and
 * the aligned tensor data follow, written here. `metadata` holds the key-value pairs only.
 */
export async function writeGguf(path: string, metadata: Record<string, GGUFTypedMetadata[string]>, tensors: GgufTensor[]): Promise<void> {
  const encoded = tensors.map(encodeTensor);
  const offsets: bigint[] = [];
  let dataSize = 0;
  for (const data of encoded) {
    offsets.push(BigInt(dataSize));
    dataSize = pad(dataSize + data.length);
  }
  // alignment 1: the library pads the metadata for data that follows it, but the tensor infos come first.
  const header = serializeGgufMetadata(
    {
      version: { value: 3, type: GGUFValueType.UINT32 },
      tensor_count: { value: BigInt(tensors.length), type: GGUFValueType.UINT64 },
      kv_count: { value: 0n, type: GGUFValueType.UINT64 }, // the library counts the entries itself
      ...metadata,
    } as GGUFTypedMetadata,
    { alignment: 1 },
  );
  const infos = Buffer.concat(tensors.map((tensor, i) => tensorInfo(tensor, offsets[i]!)));

  const file = await open(path, 'w');
  try {
    let position = 0;
    const write = async (bytes: Uint8Array) => {
      await file.write(bytes, 0, bytes.length, position);
      position += bytes.length;
    };
    await write(header);
    await write(infos);
    await write(Buffer.alloc(pad(position) - position));
    for (const data of encoded) {
      await write(data);
      await write(Buffer.alloc(pad(data.length) - data.length));
    }
  } finally {
    await file.close();
  }
}

function pad(size: number): number {
  return Math.ceil(size / ALIGNMENT) * ALIGNMENT;
}

function tensorInfo(tensor: GgufTensor, offset: bigint): Buffer {
  const name = Buffer.from(tensor.name, 'utf8');
  const info = Buffer.alloc(8 + name.length + 4 + 8 * tensor.dims.length + 4 + 8);
  let at = info.writeBigUInt64LE(BigInt(name.length), 0);
  at += name.copy(info, at);
  at = info.writeUInt32LE(tensor.dims.length, at);
  for (const dim of tensor.dims) {
    at = info.writeBigUInt64LE(BigInt(dim), at);
  }
  at = info.writeUInt32LE(GGML_TYPE[tensor.type], at);
  info.writeBigUInt64LE(offset, at);
  return info;
}

function encodeTensor(tensor: GgufTensor): Buffer {
  const count = tensor.dims.reduce((a, b) => a * b, 1);
  if (count !== tensor.values.length) {
    throw new Error(`tensor ${tensor.name}: ${tensor.values.length} values for dims ${tensor.dims.join('x')}`);
  }
  switch (tensor.type) {
    case 'f32':
      return Buffer.from(tensor.values.buffer, tensor.values.byteOffset, tensor.values.byteLength);
    case 'f16': {
      const out = Buffer.alloc(count * 2);
      for (let i = 0; i < count; i++) {
        out.writeUInt16LE(halfBits(tensor.values[i]!), i * 2);
      }
      return out;
    }
    case 'q8_0':
      return encodeQ8_0(tensor);
  }
}

// Q8_0: blocks of 32 values along ne[0], each an f16 scale d = max|x| / 127 and 32 int8 round(x / d).
function encodeQ8_0(tensor: GgufTensor): Buffer {
  if (tensor.dims[0]! % Q8_0_BLOCK !== 0) {
    throw new Error(`tensor ${tensor.name}: q8_0 needs ne[0] to be a multiple of ${Q8_0_BLOCK}`);
  }
  const values = tensor.values;
  const out = Buffer.alloc((values.length / Q8_0_BLOCK) * (2 + Q8_0_BLOCK));
  for (let block = 0; block * Q8_0_BLOCK < values.length; block++) {
    const start = block * Q8_0_BLOCK;
    let max = 0;
    for (let i = 0; i < Q8_0_BLOCK; i++) {
      max = Math.max(max, Math.abs(values[start + i]!));
    }
    const scale = max / 127;
    const at = block * (2 + Q8_0_BLOCK);
    out.writeUInt16LE(halfBits(scale), at);
    for (let i = 0; i < Q8_0_BLOCK; i++) {
      out.writeInt8(scale === 0 ? 0 : Math.round(values[start + i]! / scale), at + 2 + i);
    }
  }
  return out;
}

const f32 = new Float32Array(1);
const f32Bits = new Uint32Array(f32.buffer);

// IEEE half from a float, rounding to nearest; magnitudes below 2^-14 (half subnormals) become zero.
function halfBits(value: number): number {
  f32[0] = value;
  const bits = f32Bits[0]!;
  const sign = (bits >>> 16) & 0x8000;
  const magnitude = bits & 0x7fffffff;
  if (magnitude < 0x38800000) {
    return sign;
  }
  if (magnitude >= 0x477ff000) {
    return sign | 0x7c00; // beyond 65504: infinity
  }
  return sign | ((magnitude - 0x38000000 + 0x1000) >>> 13); // rebias the exponent from 127 to 15
}
