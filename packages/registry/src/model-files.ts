import { readdir, stat } from 'node:fs/promises';
import { basename, join } from 'node:path';
import type { ModelFormat } from '@llm-node/manifest';
import { NodeError } from './errors.js';
import type { ModelRef } from './model-ref.js';

// @huggingface/gguf's file-name parsers. Loading the package takes about 0.1 s of the thread, so it is not
// imported with this module: a registry loads it while its first engine host boots.
export const fileNameParsers = () => import('@huggingface/gguf');

/** One loadable model found under a name: a GGUF file, a complete shard set, a safetensors folder, or an ONNX folder. */
export interface ModelCandidate {
  format: ModelFormat;
  /** The label parsed from the file name (`Q4_K_M`, `F16`); null for safetensors or an unlabelled file. */
  quantization: string | null;
  /** What the engine opens: the GGUF file (the first shard of a set), or the safetensors or ONNX folder. */
  path: string;
  /** Every file whose bytes are the model's weights: the GGUF, all its shards, the .safetensors files, or model.onnx and its external data. */
  files: string[];
  /** How the candidate reads in a list: `name:Q4_K_M`, or the file name when it carries no label. */
  label: string;
}

/**
 * Finds what `<modelsDir>/<name>.gguf` and `<modelsDir>/<name>/` hold. The name was checked by
 * parseModelRef, so it cannot leave modelsDir.
 */
export async function findModelCandidates(modelsDir: string, name: string): Promise<ModelCandidate[]> {
  const { parseGGUFQuantLabel } = await fileNameParsers();
  const candidates: ModelCandidate[] = [];
  const file = join(modelsDir, `${name}.gguf`);
  if ((await statOrNull(file))?.isFile()) {
    const quantization = parseGGUFQuantLabel(name) ?? null;
    candidates.push({ format: 'gguf', quantization, path: file, files: [file], label: labelOf(name, quantization, `${name}.gguf`) });
  }
  const folder = join(modelsDir, name);
  if ((await statOrNull(folder))?.isDirectory()) {
    candidates.push(...(await folderCandidates(folder, name)));
  }
  return candidates;
}

/**
 * Picks the one candidate a reference names: by format when given, by exact quantization label when the
 * reference has one. None: 404 `model_not_found` (or `format_mismatch`); several: a 400 that lists them.
 */
export async function locateModel(modelsDir: string, ref: ModelRef, format?: ModelFormat): Promise<ModelCandidate> {
  const all = await findModelCandidates(modelsDir, ref.name);
  if (all.length === 0) {
    throw new NodeError(`Model '${ref.name}' not found: no ${ref.name}.gguf or ${ref.name}/ in the models folder`, {
      type: 'not_found_error',
      code: 'model_not_found',
    });
  }
  const ofFormat = format === undefined ? all : all.filter((c) => c.format === format);
  if (ofFormat.length === 0) {
    const formats = [...new Set(all.map((c) => c.format))].join(', ');
    throw new NodeError(`Model '${ref.name}' is ${formats}, not ${format}`, {
      type: 'invalid_request_error',
      code: 'format_mismatch',
    });
  }
  const selected = ref.quantization === null ? ofFormat : ofFormat.filter((c) => c.quantization === ref.quantization);
  if (selected.length === 0) {
    throw new NodeError(`Model '${ref.name}' has no quantization '${ref.quantization}'; available: ${list(ofFormat)}`, {
      type: 'not_found_error',
      code: 'model_not_found',
    });
  }
  if (selected.length > 1) {
    throw new NodeError(`Model '${ref.name}' has several candidates; name one: ${list(selected)}`, {
      type: 'invalid_request_error',
      code: 'ambiguous_model',
    });
  }
  return selected[0]!;
}

/** A model the models folder holds, under the id that loads it; or, when its files cannot be used, why. */
export type FoundModel = { id: string; candidate: ModelCandidate } | { id: string; error: NodeError };

/**
 * Every model in `modelsDir`: `<name>.gguf` files (one per shard set) and `<name>/` folders. A name with one
 * candidate is listed as `name`; with several, each under the id that picks it (`name:Q4_K_M`).
 */
export async function listModels(modelsDir: string): Promise<FoundModel[]> {
  const { parseGgufShardFilename } = await fileNameParsers();
  const entries = await readdir(modelsDir, { withFileTypes: true }).catch(() => []);
  const names = new Set<string>();
  for (const entry of entries) {
    if (entry.name.startsWith('.')) continue;
    const stats = await statOrNull(join(modelsDir, entry.name)); // links followed; FIFOs are neither
    if (stats?.isDirectory()) names.add(entry.name);
    else if (stats?.isFile() && isModelGguf(entry.name) && Number(parseGgufShardFilename(entry.name)?.shard ?? 1) === 1) {
      names.add(entry.name.slice(0, -'.gguf'.length));
    }
  }
  const found: FoundModel[] = [];
  for (const name of [...names].sort()) {
    try {
      const candidates = await findModelCandidates(modelsDir, name);
      for (const candidate of candidates) {
        const id = candidates.length === 1 || candidate.quantization === null ? name : `${name}:${candidate.quantization}`;
        found.push({ id, candidate });
      }
    } catch (error) {
      found.push({ id: name, error: error as NodeError });
    }
  }
  return found;
}

/** Bytes on disk of the model's files together. */
export async function sizeOnDisk(candidate: ModelCandidate): Promise<number> {
  const sizes = await Promise.all(candidate.files.map(async (file) => (await statOrNull(file))?.size ?? 0));
  return sizes.reduce((a, b) => a + b, 0);
}

async function folderCandidates(folder: string, name: string): Promise<ModelCandidate[]> {
  const { parseGGUFQuantLabel, parseGgufShardFilename } = await fileNameParsers();
  const entries = await readdir(folder, { withFileTypes: true }).catch((error: NodeJS.ErrnoException) => {
    throw new NodeError(`Cannot read model folder '${name}': ${error.code ?? error.message}`, {
      type: 'invalid_request_error',
      code: 'invalid_model',
      status: 422,
      cause: error,
    });
  });
  // Regular files only, links followed: opening a FIFO or a device would block one of libuv's few threads for good.
  const regular = await Promise.all(
    entries.map(async (e) => (e.isFile() || (e.isSymbolicLink() && (await statOrNull(join(folder, e.name)))?.isFile()) ? e.name : null)),
  );
  const files = regular.filter((name): name is string => name !== null).sort();
  const candidates: ModelCandidate[] = [];

  const shardSets = new Map<string, { total: number; shards: Set<number> }>();
  for (const file of files.filter(isModelGguf)) {
    const shard = parseGgufShardFilename(file);
    if (shard === null) {
      const quantization = parseGGUFQuantLabel(file) ?? null;
      const path = join(folder, file);
      candidates.push({ format: 'gguf', quantization, path, files: [path], label: labelOf(name, quantization, file) });
      continue;
    }
    const set = shardSets.get(shard.prefix) ?? { total: Number(shard.total), shards: new Set<number>() };
    set.shards.add(Number(shard.shard));
    shardSets.set(shard.prefix, set);
  }
  for (const [prefix, set] of shardSets) {
    const shardFiles = Array.from({ length: set.total }, (_, i) => shardFileName(prefix, i + 1, set.total));
    const missing = shardFiles.filter((_, i) => !set.shards.has(i + 1));
    if (missing.length > 0) {
      throw new NodeError(`Model '${name}' is an incomplete shard set: missing ${missing.join(', ')}`, {
        type: 'invalid_request_error',
        code: 'model_corrupt',
        status: 422,
      });
    }
    const paths = shardFiles.map((f) => join(folder, f));
    const quantization = parseGGUFQuantLabel(prefix) ?? null;
    candidates.push({ format: 'gguf', quantization, path: paths[0]!, files: paths, label: labelOf(name, quantization, shardFiles[0]!) });
  }

  const safetensors = files.filter((f) => f.endsWith('.safetensors'));
  if (safetensors.length > 0 && files.includes('config.json')) {
    const paths = safetensors.map((f) => join(folder, f));
    candidates.push({ format: 'safetensors', quantization: null, path: folder, files: paths, label: `${name} (safetensors)` });
  }
  // An ONNX export (ONNX Runtime GenAI's model builder, Optimum): model.onnx, with its weights in it or in
  // external data files named after it (model.onnx.data, model.onnx_data).
  if (files.includes('model.onnx')) {
    const paths = files.filter((f) => f.startsWith('model.onnx')).map((f) => join(folder, f));
    candidates.push({ format: 'onnx', quantization: null, path: folder, files: paths, label: `${name} (onnx)` });
  }
  return candidates;
}

// Vision projectors (mmproj-*.gguf) sit beside the language model in GGUF repositories but are not models.
function isModelGguf(file: string): boolean {
  return file.endsWith('.gguf') && !file.toLowerCase().startsWith('mmproj');
}

function shardFileName(prefix: string, shard: number, total: number): string {
  const pad = (n: number) => String(n).padStart(5, '0');
  return `${prefix}-${pad(shard)}-of-${pad(total)}.gguf`;
}

function labelOf(name: string, quantization: string | null, file: string): string {
  return quantization === null ? file : `${name}:${quantization}`;
}

// Two files can carry the same label (a-Q4_K_M.gguf, b-Q4_K_M.gguf); the list then names the files.
function list(candidates: ModelCandidate[]): string {
  const labels = candidates.map((c) => c.label);
  const distinct = new Set(labels).size === labels.length;
  return (distinct ? labels : candidates.map((c) => basename(c.path))).join(', ');
}

async function statOrNull(path: string) {
  return stat(path).catch(() => null);
}
