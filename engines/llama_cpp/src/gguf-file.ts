import { open, readFile } from 'node:fs/promises';

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

/**
 * One key-value entry of a GGUF file as it is encoded there (key, type and value), copied into another file
 * without decoding it: the Llama 3 vocabulary's 128,256 strings and 280,147 merges cost seconds to decode and
 * encode again, and nothing here needs them as text.
 */
export interface RawGgufEntry {
  key: string;
  bytes: Buffer;
  /** The element count, when the value is an array. */
  arrayLength?: number;
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
export async function writeGguf(
  path: string,
  metadata: Record<string, GGUFTypedMetadata[string]>,
  tensors: GgufTensor[],
  rawEntries: RawGgufEntry[] = [],
): Promise<void> {
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
  // The raw entries follow the serialised ones, counted in the header's kv_count (after magic, version and
  // tensor_count).
  const kvCount = new DataView(header.buffer, header.byteOffset + 16, 8);
  kvCount.setBigUint64(0, kvCount.getBigUint64(0, true) + BigInt(rawEntries.length), true);
  const infos = Buffer.concat(tensors.map((tensor, i) => tensorInfo(tensor, offsets[i]!)));

  const file = await open(path, 'w');
  try {
    let position = 0;
    const write = async (bytes: Uint8Array) => {
      await file.write(bytes, 0, bytes.length, position);
      position += bytes.length;
    };
    await write(header);
    for (const entry of rawEntries) {
      await write(entry.bytes);
    }
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

// Byte sizes of the scalar value types, indexed by GGUFValueType (STRING and ARRAY are sized by their content).
const SCALAR_BYTES = [1, 1, 2, 2, 4, 4, 4, 1, 0, 0, 8, 8, 8];

/** Every key-value entry of a GGUF file (version 2 or 3), undecoded. For the project's own trusted files. */
export async function readRawEntries(path: string): Promise<RawGgufEntry[]> {
  const data = await readFile(path);
  if (data.toString('latin1', 0, 4) !== 'GGUF') {
    throw new Error(`${path} is not a GGUF file`);
  }
  let at = 24; // magic, version, tensor_count, kv_count
  const u64 = () => {
    const value = Number(data.readBigUInt64LE(at));
    at += 8;
    return value;
  };
  const skipValue = (type: number): void => {
    if (type === GGUFValueType.STRING) {
      const length = u64();
      at += length;
    } else if (type === GGUFValueType.ARRAY) {
      const elementType = data.readUInt32LE(at);
      at += 4;
      const length = u64();
      if (elementType === GGUFValueType.STRING || elementType === GGUFValueType.ARRAY) {
        for (let i = 0; i < length; i++) skipValue(elementType);
      } else {
        at += length * SCALAR_BYTES[elementType]!;
      }
    } else {
      at += SCALAR_BYTES[type]!;
    }
  };
  const entries: RawGgufEntry[] = [];
  for (let count = Number(data.readBigUInt64LE(16)); count > 0; count--) {
    const start = at;
    const keyLength = u64();
    const key = data.toString('utf8', at, at + keyLength);
    at += keyLength;
    const type = data.readUInt32LE(at);
    at += 4;
    const arrayLength = type === GGUFValueType.ARRAY ? Number(data.readBigUInt64LE(at + 4)) : undefined;
    skipValue(type);
    entries.push({ key, bytes: data.subarray(start, at), ...(arrayLength === undefined ? {} : { arrayLength }) });
  }
  return entries;
}

/** The elements of a raw array entry of strings or scalars, each as its encoded bytes (a string's without its length). */
export function rawArrayElements({ bytes }: RawGgufEntry): Buffer[] {
  let at = 8 + Number(bytes.readBigUInt64LE(0)) + 4; // the key, then the entry's type (ARRAY)
  const elementType = bytes.readUInt32LE(at);
  const count = Number(bytes.readBigUInt64LE(at + 4));
  at += 12;
  const elements: Buffer[] = [];
  for (let i = 0; i < count; i++) {
    let size = SCALAR_BYTES[elementType]!;
    if (elementType === GGUFValueType.STRING) {
      size = Number(bytes.readBigUInt64LE(at));
      at += 8;
    }
    elements.push(bytes.subarray(at, at + size));
    at += size;
  }
  return elements;
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
