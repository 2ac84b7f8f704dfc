import OpenAI, { AuthenticationError } from 'openai';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { startTestNode, type TestNode } from './testing/test-node.js';

let node: TestNode;

beforeAll(async () => {
  node = await startTestNode({ apiKey: 'sk-local-secret' });
});

afterAll(async () => {
  await node.close();
});

async function errorCode(response: Response): Promise<{ status: number; code: string }> {
  const body = (await response.json()) as { error: { code: string } };
  return { status: response.status, code: body.error.code };
}

describe('API key', () => {
  test('the official client with the key is served', async () => {
    const completion = await node.client.chat.completions.create({ model: 'echo', messages: [{ role: 'user', content: 'Hi' }] });
    expect(completion.choices[0]!.finish_reason).toBe('stop');
  });

  test('a wrong key is a 401 invalid_api_key', async () => {
    const client = new OpenAI({ baseURL: `${node.baseUrl}/v1`, apiKey: 'sk-guess', maxRetries: 0 });
    const error = await client.models.list().catch((e: unknown) => e);
    expect(error).toBeInstanceOf(AuthenticationError);
    expect((error as AuthenticationError).code).toBe('invalid_api_key');
  });

  test('no key is a 401 on /v1, /api, /apply-template and /metrics', async () => {
    for (const path of ['/v1/models', '/api/engines', '/api/models', '/metrics']) {
      expect(await errorCode(await fetch(`${node.baseUrl}${path}`))).toEqual({ status: 401, code: 'invalid_api_key' });
    }
    const apply = await node.post('/apply-template', { model: 'echo', messages: [{ role: 'user', content: 'Hi' }] });
    expect(await errorCode(apply)).toEqual({ status: 401, code: 'invalid_api_key' });
    const basic = await fetch(`${node.baseUrl}/api/engines`, { headers: { Authorization: 'Basic c2stbG9jYWwtc2VjcmV0' } });
    expect(await errorCode(basic)).toEqual({ status: 401, code: 'invalid_api_key' });
  });

  test('the scheme name is case-insensitive', async () => {
    const response = await fetch(`${node.baseUrl}/api/engines`, { headers: { Authorization: 'bearer sk-local-secret' } });
    expect(response.status).toBe(200);
  });

  test('/health stays open', async () => {
    const response = await fetch(`${node.baseUrl}/health`);
    expect(response.status).toBe(200);
  });
});
