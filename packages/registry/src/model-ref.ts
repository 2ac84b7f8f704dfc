import { NodeError } from './errors.js';

/** A model reference split into the model's name and the quantization it selects, if any (`name:Q4_K_M`). */
export interface ModelRef {
  name: string;
  quantization: string | null;
}

// A name is looked up as <models>/<name>.gguf or <models>/<name>/, so anything that could make it a path
// (separators, a leading dot as in "..", a drive letter's colon, NUL and other controls) is refused.
// biome-ignore lint/suspicious/noControlCharactersInRegex: control characters are what it refuses
const FORBIDDEN_NAME_CHARS = /[/\\:\u0000-\u001f\u007f]/;
const QUANTIZATION = /^[A-Za-z0-9_]+$/;
const MAX_NAME_LENGTH = 200;

/** Parses a `model_id` (`llama-3.2-1b`, `llama-3.2-1b:Q4_K_M`); anything path-like is a 400 `invalid_model_id`. */
export function parseModelRef(modelId: unknown): ModelRef {
  if (typeof modelId !== 'string' || modelId.length === 0) {
    throw invalidModelId('model_id must be a non-empty string');
  }
  const colon = modelId.indexOf(':');
  const name = colon === -1 ? modelId : modelId.slice(0, colon);
  const quantization = colon === -1 ? null : modelId.slice(colon + 1);
  const shown = JSON.stringify(modelId);
  if (name.length === 0) throw invalidModelId(`Invalid model_id ${shown}: the name before ':' is empty`);
  if (name.length > MAX_NAME_LENGTH) {
    throw invalidModelId(`Invalid model_id ${shown}: longer than ${MAX_NAME_LENGTH} characters`);
  }
  if (FORBIDDEN_NAME_CHARS.test(name) || name.startsWith('.')) {
    throw invalidModelId(
      `Invalid model_id ${shown}: a model id is a name in the models folder, not a path ` +
        `(no '/', '\\', control characters, or leading '.')`,
    );
  }
  if (quantization !== null && !QUANTIZATION.test(quantization)) {
    throw invalidModelId(`Invalid model_id ${shown}: the quantization after ':' must be a label such as Q4_K_M`);
  }
  return { name, quantization };
}

function invalidModelId(message: string): NodeError {
  return new NodeError(message, { type: 'invalid_request_error', code: 'invalid_model_id' });
}
