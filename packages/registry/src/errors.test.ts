import { EngineError } from '@llm-node/abi-native';
import { describe, expect, it } from 'vitest';
import { NodeError, toNodeError } from './errors.js';

describe('NodeError', () => {
  it('serialises to {"error":{"message","type","code"}} and takes its HTTP status from its type', () => {
    const error = new NodeError('Insufficient VRAM: required 16GB, available 8GB', { type: 'resource_error', code: 'oom_vram' });
    expect(JSON.stringify(error)).toBe(
      '{"error":{"message":"Insufficient VRAM: required 16GB, available 8GB","type":"resource_error","code":"oom_vram"}}',
    );
    expect(error.status).toBe(507);
    expect(new NodeError('x', { type: 'not_found_error', code: 'model_not_found' }).status).toBe(404);
    expect(new NodeError('x', { type: 'invalid_request_error', code: 'model_in_use', status: 409 }).status).toBe(409);
  });
});

describe('toNodeError', () => {
  it.each([
    ['out_of_memory', 'resource_error', 'oom_vram', 507],
    ['model_corrupt', 'invalid_request_error', 'model_corrupt', 422],
    ['model_not_found', 'not_found_error', 'model_not_found', 404],
    ['context_overflow', 'invalid_request_error', 'context_length_exceeded', 400],
    ['unsupported', 'unsupported_error', 'unsupported', 400],
    ['abi_mismatch', 'plugin_error', 'abi_mismatch', 500],
    ['missing_symbol', 'plugin_error', 'missing_symbol', 500],
    ['internal', 'engine_error', 'engine_internal', 500],
    ['closed', 'engine_error', 'engine_closed', 503],
  ] as const)("maps EngineError %s to %s/%s (%i), keeping the plugin's message", (engineCode, type, code, status) => {
    const mapped = toNodeError(new EngineError(engineCode, 'the plugin says why'));
    expect(mapped).toMatchObject({ type, code, status, message: 'the plugin says why' });
    expect(mapped.cause).toBeInstanceOf(EngineError);
  });

  it('passes a NodeError through and turns anything else into a server_error', () => {
    const own = new NodeError('x', { type: 'plugin_error', code: 'id_conflict' });
    expect(toNodeError(own)).toBe(own);
    expect(toNodeError(new TypeError('boom'))).toMatchObject({
      type: 'server_error',
      code: 'internal_error',
      status: 500,
      message: 'boom',
    });
    expect(toNodeError('text')).toMatchObject({ message: 'text' });
  });
});
