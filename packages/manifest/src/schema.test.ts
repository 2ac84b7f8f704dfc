import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';
import { GPU_BACKENDS } from '@llm-node/gpu-detect';
import { Ajv } from 'ajv';
import { describe, expect, it } from 'vitest';
import { GENERATED, validatorSource } from '../scripts/compile-schema.mjs';
import { EXPECTED, KNOWN_FIELDS, MODEL_FORMATS, schema } from './schema.js';
import type { ModelFormat } from './types.js';

describe('the JSON Schema', () => {
  it('is a valid draft-07 schema', () => {
    const ajv = new Ajv();
    expect(ajv.validateSchema(schema), ajv.errorsText()).toBe(true);
  });

  it('is validated by the code Ajv compiles from it now (else: node scripts/compile-schema.mjs)', () => {
    expect(readFileSync(GENERATED, 'utf8')).toBe(validatorSource());
  });

  it('lists the same GPU backends as @llm-node/gpu-detect', () => {
    expect(schema.properties.gpu_backend?.enum).toEqual([...GPU_BACKENDS]);
  });

  it('owns the model formats, which are those of the ModelFormat type', () => {
    const typed: Record<ModelFormat, true> = { gguf: true, safetensors: true, onnx: true };
    expect([...MODEL_FORMATS].sort()).toEqual(Object.keys(typed).sort());
  });

  it('has an error wording for every field it defines', () => {
    expect(Object.keys(EXPECTED).sort()).toEqual([...KNOWN_FIELDS].sort());
  });

  it('is exported as @llm-node/manifest/schema.json for plugin authors\' "$schema"', () => {
    const resolved = createRequire(import.meta.url).resolve('@llm-node/manifest/schema.json');
    expect(resolved).toBe(fileURLToPath(new URL('../schema/manifest.schema.json', import.meta.url)));
    expect(JSON.parse(readFileSync(resolved, 'utf8'))).toEqual(schema);
  });
});
