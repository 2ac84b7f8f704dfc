import type { GgufValue } from './gguf-header.js';

// llama.cpp's own bounds (src/llama-hparams.h); beyond them its loader asserts and aborts its process.
const MAX_LAYERS = 512;
const MAX_EXPERTS = 1024;
const INT32_MAX = 2 ** 31 - 1;

/**
 * The hyperparameters a GGUF states, checked against what its loaders assert on (llama.cpp aborts the process
 * on a layer count of 0, more experts used than there are, ...). Only keys that are present are checked: a
 * model for an engine that does not use them is not refused for lacking them. Returns why the file is
 * refused, naming the key, or null.
 */
export function ggufHyperparameterProblem(metadata: Record<string, GgufValue>, architecture: string): string | null {
  const key = (name: string) => `${architecture}.${name}`;
  const read = (name: string) => integers(metadata[key(name)]);

  const blocks = read('block_count');
  if (blocks !== undefined) {
    if (blocks === null || blocks.length !== 1) return `${key('block_count')} must be one integer`;
    if (blocks[0]! < 1 || blocks[0]! > MAX_LAYERS) return `${key('block_count')} is ${blocks[0]}; a model has 1 to ${MAX_LAYERS} layers`;
  }
  const layerCount = blocks?.[0];
  for (const name of ['context_length', 'embedding_length']) {
    const value = read(name);
    if (value === undefined) continue;
    if (value === null || value.length !== 1 || value[0]! < 1 || value[0]! > INT32_MAX)
      return `${key(name)} must be an integer from 1 to ${INT32_MAX}`;
  }
  for (const name of ['attention.head_count', 'attention.head_count_kv', 'feed_forward_length', 'expert_used_count']) {
    const value = read(name);
    if (value === null) return `${key(name)} must be an integer or a list of them`;
    if (value !== undefined && value.length > 1 && layerCount !== undefined && value.length !== layerCount) {
      return `${key(name)} lists ${value.length} layers; ${key('block_count')} says ${layerCount}`;
    }
    if (value?.some((n) => n > INT32_MAX)) return `${key(name)} holds a value over ${INT32_MAX}`;
  }
  const nextn = read('nextn_predict_layers');
  if (nextn?.[0] !== undefined && layerCount !== undefined && nextn[0] > layerCount) {
    return `${key('nextn_predict_layers')} is ${nextn[0]}, more than the ${layerCount} layers`;
  }
  return expertProblem(key, read);
}

function expertProblem(key: (name: string) => string, read: (name: string) => number[] | null | undefined): string | null {
  const count = read('expert_count');
  if (count === null || (count !== undefined && count.length !== 1)) return `${key('expert_count')} must be one integer`;
  const experts = count?.[0] ?? 0;
  const used = Math.max(0, ...(read('expert_used_count') ?? []));
  const groups = read('expert_group_count')?.[0] ?? 0;
  const groupsUsed = read('expert_group_used_count')?.[0] ?? 0;
  if (experts > MAX_EXPERTS) return `${key('expert_count')} is ${experts}; llama.cpp supports at most ${MAX_EXPERTS}`;
  if (experts === 0) {
    if (used > 0) return `${key('expert_used_count')} is ${used} but the model has no ${key('expert_count')}`;
    if (groups > 0) return `${key('expert_group_count')} is ${groups} but the model has no ${key('expert_count')}`;
    return null;
  }
  if (used === 0) return `${key('expert_count')} is ${experts} but ${key('expert_used_count')} is 0 or missing`;
  if (used > experts) return `${key('expert_used_count')} is ${used}, more than the ${experts} experts`;
  if (groups >= experts) return `${key('expert_group_count')} is ${groups}; it must be below the ${experts} experts`;
  if (groups > 1 && (experts % groups !== 0 || groupsUsed < 1 || groupsUsed >= groups)) {
    return `${key('expert_group_count')} ${groups} and ${key('expert_group_used_count')} ${groupsUsed} do not divide ${experts} experts`;
  }
  return null;
}

/** The integers of a scalar or array value; undefined when absent, null when not integers. */
function integers(value: GgufValue | undefined): number[] | null | undefined {
  if (value === undefined) return undefined;
  const values = Array.isArray(value) ? value : [value];
  const numbers = values.map((v) => (typeof v === 'bigint' ? Number(v) : v));
  return numbers.every((n) => typeof n === 'number' && Number.isInteger(n) && n >= 0) ? (numbers as number[]) : null;
}
