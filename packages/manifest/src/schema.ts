import { readFileSync } from 'node:fs';
import type { ErrorObject, ValidateFunction } from 'ajv';
import { describe } from './describe.js';
import { validate as compiledValidate } from './manifest-validator.generated.js';
import type { ModelFormat } from './types.js';

interface ManifestSchema {
  properties: Record<string, { enum?: string[]; items?: { enum?: string[] } }>;
}

// The same file plugin authors point "$schema" at; src/ and dist/ both sit one level below the package root.
export const schema = JSON.parse(readFileSync(new URL('../schema/manifest.schema.json', import.meta.url), 'utf8')) as ManifestSchema;

// The schema as Ajv compiles it, every error at once, compiled ahead of time (scripts/compile-schema.mjs).
const validate = compiledValidate as ValidateFunction;

export const KNOWN_FIELDS = new Set(Object.keys(schema.properties));

/** The model formats a manifest may list, in the schema's order; the schema is their one owner. */
export const MODEL_FORMATS = schema.properties.formats!.items!.enum as readonly ModelFormat[];

const choices = (values: string[] | undefined, last: 'or' | 'and') =>
  (values ?? [])
    .map((value) => JSON.stringify(value))
    .join(', ')
    .replace(/, ([^,]*)$/, ` ${last} $1`);

/** What each field must be, worded to follow `"field" must be …`. */
export const EXPECTED: Record<string, string> = {
  $schema: 'a string (the path or URL of manifest.schema.json)',
  id: 'a name of letters, digits, "_", "-" and "." that starts with a letter, digit or "_", at most 64 long, such as "llama_cpp"',
  version: 'a semantic version such as "1.0.0"',
  abi_version: 'a string of digits such as "1"',
  gpu_backend: `one of ${choices(schema.properties.gpu_backend?.enum, 'or')}`,
  architectures: 'a non-empty list of unique, non-empty architecture names such as ["llama", "mistral"]',
  formats: `a non-empty list of unique formats among ${choices(schema.properties.formats?.items?.enum, 'and')}`,
  binary: 'a file name in the same folder such as "libllama_engine.dylib" (no "/", "\\" or ":", not "." or "..")',
  modalities: `a non-empty list of unique modalities among ${choices(schema.properties.modalities?.items?.enum, 'and')}`,
  supports_vision: 'true or false',
  license: 'a non-empty string such as "MIT"',
};

/** Validates a manifest object against the schema: one message per wrong or missing field, in schema order. */
export function fieldErrors(manifest: Record<string, unknown>): string[] {
  if (validate(manifest)) return [];
  const byField = new Map<string, string>();
  for (const error of validate.errors ?? []) {
    const field = fieldOf(error);
    if (!byField.has(field)) byField.set(field, message(field, error, manifest[field]));
  }
  return [...KNOWN_FIELDS].filter((field) => byField.has(field)).map((field) => byField.get(field) ?? '');
}

function fieldOf(error: ErrorObject): string {
  if (error.keyword === 'required') return String(error.params.missingProperty);
  return unescapePointer(error.instancePath.split('/')[1] ?? '');
}

function message(field: string, error: ErrorObject, value: unknown): string {
  if (error.keyword === 'required') return `"${field}" is missing; it must be ${EXPECTED[field]}`;
  return `"${field}" must be ${EXPECTED[field]} (got ${got(error, value)})`;
}

/** The wrong part of a value: the whole value, or for a list the item at fault. */
function got(error: ErrorObject, value: unknown): string {
  const item = error.instancePath.split('/')[2];
  if (Array.isArray(value) && item !== undefined) return `${describe(value[Number(item)])} at [${item}]`;
  if (Array.isArray(value) && error.keyword === 'uniqueItems') {
    const { i, j } = error.params as { i: number; j: number };
    return `${describe(value[j])} twice, at [${Math.min(i, j)}] and [${Math.max(i, j)}]`;
  }
  return describe(value);
}

function unescapePointer(segment: string): string {
  return segment.replace(/~1/g, '/').replace(/~0/g, '~');
}
