import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { startTestNode, type TestNode } from './testing/test-node.js';

let node: TestNode;

beforeAll(async () => {
  node = await startTestNode();
});

afterAll(async () => {
  await node.close();
});

// The echo engine's embedding of a text counts its bytes by value modulo 8: "ab" is [0, 1, 1, 0, 0, 0, 0, 0].
const AB = [0, 1, 1, 0, 0, 0, 0, 0].map((x) => x / Math.SQRT2);
const f32 = (values: number[]) => [...Float32Array.from(values)];

describe('POST /v1/embeddings', () => {
  test("answers OpenAI's list of unit vectors, in input order, with usage", async () => {
    const response = await node.post('/v1/embeddings', { model: 'echo', input: ['ab', 'aaaa'], encoding_format: 'float' });
    expect(response.status).toBe(200);
    expect(await response.json()).toEqual({
      object: 'list',
      data: [
        { object: 'embedding', index: 0, embedding: f32(AB) },
        { object: 'embedding', index: 1, embedding: [0, 1, 0, 0, 0, 0, 0, 0] },
      ],
      model: 'echo',
      usage: { prompt_tokens: 2, total_tokens: 2 },
    });
  });

  test('gives base64 of little-endian float32, which the official client asks for and decodes', async () => {
    const response = await node.post('/v1/embeddings', { model: 'echo', input: 'ab', encoding_format: 'base64' });
    const { data } = (await response.json()) as { data: { embedding: string }[] };
    expect([...new Float32Array(new Uint8Array(Buffer.from(data[0]!.embedding, 'base64')).buffer)]).toEqual(f32(AB));
    const viaClient = await node.client.embeddings.create({ model: 'echo', input: 'ab' });
    expect(viaClient.data[0]!.embedding).toEqual(f32(AB));
  });

  test('embeds many inputs, more than one engine call takes, in order', async () => {
    const inputs = Array.from({ length: 40 }, (_, i) => `${'a'.repeat(i + 1)}b`);
    const { data } = await node.client.embeddings.create({ model: 'echo', input: inputs, encoding_format: 'float' });
    expect(data.map((item) => item.index)).toEqual(inputs.map((_, i) => i));
    data.forEach((item, i) => {
      const [a, b] = [i + 1, 1].map((n) => n / Math.hypot(i + 1, 1));
      expect(item.embedding).toEqual(f32([0, a!, b!, 0, 0, 0, 0, 0]));
    });
  });

  test('cuts to `dimensions` and scales the cut to length 1', async () => {
    const { data } = await node.client.embeddings.create({ model: 'echo', input: 'abc', dimensions: 2, encoding_format: 'float' });
    expect(data[0]!.embedding).toEqual([0, 1]);
  });

  test.each([
    [{ model: 'echo', input: 'ab', dimensions: 9 }, 'invalid_parameter', 'dimensions'],
    [{ model: 'echo', input: [1, 2] }, 'unsupported_parameter', 'input'],
    [{ model: 'echo', input: '' }, 'invalid_parameter', 'input'],
    [{ model: 'echo', input: [] }, 'invalid_parameter', 'input'],
    [{ model: 'echo', input: 'ab', encoding_format: 'int8' }, 'invalid_parameter', 'encoding_format'],
    [{ model: 'echo', input: 'ab', truncate: true }, 'unsupported_parameter', 'truncate'],
  ])('refuses %j with a 400 %s naming %s', async (body, code, param) => {
    const response = await node.post('/v1/embeddings', body);
    expect(response.status).toBe(400);
    expect(await response.json()).toMatchObject({ error: { type: 'invalid_request_error', code, param } });
  });

  test("a model whose engine's manifest does not list the embedding modality is a 400 that says so", async () => {
    const response = await node.post('/v1/embeddings', { model: 'echo-slow', input: 'ab' });
    expect(response.status).toBe(400);
    expect(await response.json()).toMatchObject({
      error: { code: 'embeddings_unsupported', message: "Model 'echo-slow' gives no embeddings (engine 'echo_slow')" },
    });
  });

  test('an unknown model is a 404, as for completions', async () => {
    const response = await node.post('/v1/embeddings', { model: 'nothing-here', input: 'ab' });
    expect(response.status).toBe(404);
  });
});
