import { describe, expect, it } from 'vitest';
import { parseModelRef } from './model-ref.js';

describe('parseModelRef', () => {
  it('reads a plain name and a name with a quantization selector', () => {
    expect(parseModelRef('llama-3.2-1b')).toEqual({ name: 'llama-3.2-1b', quantization: null });
    expect(parseModelRef('llama-3.2-1b:Q4_K_M')).toEqual({ name: 'llama-3.2-1b', quantization: 'Q4_K_M' });
  });

  it.each([
    ['', 'non-empty'],
    ['../etc/passwd', 'not a path'],
    ['..', 'not a path'],
    ['.hidden', 'not a path'],
    ['models/llama', 'not a path'],
    ['models\\llama', 'not a path'],
    ['/abs/llama', 'not a path'],
    ['C:\\models\\llama', 'quantization'],
    ['llama\u0000', 'not a path'],
    ['llama\n', 'not a path'],
    [':Q4_K_M', 'name before'],
    ['llama:', 'quantization'],
    ['llama:Q4/..', 'quantization'],
    ['x'.repeat(201), 'longer than'],
  ])('refuses %j as a 400 invalid_model_id', (id, reason) => {
    let thrown: unknown;
    try {
      parseModelRef(id);
    } catch (error) {
      thrown = error;
    }
    expect(thrown).toMatchObject({ type: 'invalid_request_error', code: 'invalid_model_id', status: 400 });
    expect((thrown as Error).message).toContain(reason);
  });

  it('refuses a model_id that is not a string', () => {
    expect(() => parseModelRef(42)).toThrow(expect.objectContaining({ code: 'invalid_model_id' }));
  });
});
