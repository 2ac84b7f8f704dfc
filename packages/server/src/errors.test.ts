import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { APIError } from 'openai';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { writeGgufModel } from '@llm-node/registry/testing';
import { capturedLogger, startTestNode, type TestNode } from './testing/test-node.js';

const MIB = 1024 * 1024;
let node: TestNode;
const { logger, lines: logLines } = capturedLogger();

beforeAll(async () => {
  node = await startTestNode({
    logger,
    bodyLimit: 64 * 1024,
    vramLimitBytes: 1 * MIB,
    async prepare({ modelsDir }) {
      await writeGgufModel(join(modelsDir, 'nemotron-mini.gguf'), { architecture: 'nemotron' });
      await writeGgufModel(join(modelsDir, 'short.gguf'), { architecture: 'echo' });
      await writeGgufModel(join(modelsDir, 'huge.gguf'), { architecture: 'echo', tensorDataBytes: 16 * MIB });
      await writeFile(join(modelsDir, 'broken.gguf'), 'not a GGUF file at all');
    },
  });
});

afterAll(async () => {
  await node.close();
});

/** The error body `{"error":{"message","type","code"}}`, as JSON, with the status and code expected; returns the error object. */
async function expectError(response: Response, status: number, code: string) {
  expect(response.headers.get('content-type')).toMatch(/^application\/json/);
  const body = (await response.json()) as { error: { message: string; type: string; code: string; param?: string } };
  expect(Object.keys(body)).toEqual(['error']);
  // `param`, as OpenAI's errors carry it, only where a request field is at fault.
  expect(
    Object.keys(body.error)
      .filter((key) => key !== 'param')
      .sort(),
  ).toEqual(['code', 'message', 'type']);
  expect({ status: response.status, code: body.error.code }).toEqual({ status, code });
  expect(body.error.message).not.toBe('');
  return body.error;
}

const hello = [{ role: 'user', content: 'Hello' }];
const chat = (body: unknown) => node.post('/v1/chat/completions', body);

describe('request errors', () => {
  test('malformed JSON is a 400 invalid_json', async () => {
    await expectError(await chat('{"model": "echo", "messages": ['), 400, 'invalid_json');
  });

  test('a body over the limit is a 413 payload_too_large', async () => {
    const content = 'x'.repeat(100 * 1024);
    await expectError(await chat({ model: 'echo', messages: [{ role: 'user', content }] }), 413, 'payload_too_large');
  });

  test('a body that is not a JSON object is a 400 invalid_request_error', async () => {
    await expectError(await chat([1, 2]), 400, 'invalid_request_error');
    const plain = await fetch(`${node.baseUrl}/v1/chat/completions`, {
      method: 'POST',
      body: 'Hello',
      headers: { 'Content-Type': 'text/plain' },
    });
    await expectError(plain, 400, 'invalid_request_error');
  });

  test('unknown fields are a 400 unsupported_parameter that names each', async () => {
    const error = await expectError(
      await chat({ model: 'echo', messages: [{ role: 'user', content: 'Hi', mood: 'happy' }], best_of: 2 }),
      400,
      'unsupported_parameter',
    );
    expect(error.message).toContain('best_of');
    expect(error.message).toContain('messages[0].mood');
    expect(error.param).toMatch(/^(best_of|messages\[0\]\.mood)$/);
  });

  test.each([
    ['temperature', { temperature: 2.5 }],
    ['top_p', { top_p: 0 }],
    ['top_k', { top_k: -1 }],
    ['min_p', { min_p: 1.5 }],
    ['presence_penalty', { presence_penalty: 3 }],
    ['frequency_penalty', { frequency_penalty: -2.1 }],
    ['max_tokens', { max_tokens: 0 }],
    ['seed', { seed: 1.5 }],
    ['stop', { stop: ['a', 'b', 'c', 'd', 'e'] }],
    ['stream', { stream: 'yes' }],
  ])('%s out of range is a 400 invalid_parameter naming it', async (field, values) => {
    const error = await expectError(await chat({ model: 'echo', messages: hello, ...values }), 400, 'invalid_parameter');
    expect(error.message).toContain(field);
    expect(error.param).toBe(field);
  });

  test('n > 1 and top_logprobs are a 400 unsupported_parameter naming the field', async () => {
    expect((await expectError(await chat({ model: 'echo', messages: hello, n: 2 }), 400, 'unsupported_parameter')).param).toBe('n');
    const top = await expectError(
      await chat({ model: 'echo', messages: hello, logprobs: true, top_logprobs: 2 }),
      400,
      'unsupported_parameter',
    );
    expect(top.param).toBe('top_logprobs');
    const completion = await node.post('/v1/completions', { model: 'echo', prompt: 'Hi', logprobs: 2 });
    expect((await expectError(completion, 400, 'unsupported_parameter')).param).toBe('logprobs');
    // The official client reads it as APIError.param.
    const error = await node.client.chat.completions
      .create({ model: 'echo', messages: [{ role: 'user', content: 'Hi' }], n: 3 })
      .catch((e: unknown) => e);
    expect(error).toBeInstanceOf(APIError);
    expect((error as APIError).param).toBe('n');
  });

  test('structured output from an engine that cannot hold its output to a schema is a 400 naming response_format', async () => {
    for (const response_format of [
      { type: 'json_object' },
      { type: 'json_schema', json_schema: { name: 'x', schema: { type: 'string' } } },
    ]) {
      const error = await expectError(await chat({ model: 'echo', messages: hello, response_format }), 400, 'unsupported_parameter');
      expect(error).toMatchObject({ param: 'response_format', message: expect.stringContaining("Engine 'echo' cannot hold") });
    }
    expect((await chat({ model: 'echo', messages: hello, response_format: { type: 'text' } })).status).toBe(200);
    const malformed = await expectError(
      await chat({ model: 'echo', messages: hello, response_format: { type: 'json_schema' } }),
      400,
      'invalid_parameter',
    );
    expect(malformed.param).toBe('response_format.json_schema');
  });

  test('logit_bias for an engine that cannot bias logits is a 400 naming it; a key that is not a token id too', async () => {
    const refused = await expectError(
      await chat({ model: 'echo', messages: hello, logit_bias: { '15': -100 } }),
      400,
      'unsupported_parameter',
    );
    expect(refused.param).toBe('logit_bias');
    const malformed = await expectError(await chat({ model: 'echo', messages: hello, logit_bias: { word: 1 } }), 400, 'invalid_parameter');
    expect(malformed.param).toMatch(/^logit_bias/);
  });

  test('tool_choice that cannot be served is a 400 naming it', async () => {
    const tools = [{ type: 'function', function: { name: 'add', parameters: { type: 'object' } } }];
    const cases: [object, string, string][] = [
      [{ tool_choice: 'required' }, 'invalid_parameter', "tool_choice 'required' needs tools"],
      [
        { tools, tool_choice: { type: 'function', function: { name: 'sub' } } },
        'invalid_parameter',
        "tool_choice names 'sub', which is not among the tools",
      ],
      [{ tools, tool_choice: 'required', response_format: { type: 'json_object' } }, 'invalid_parameter', 'cannot both shape the answer'],
      [{ tools, tool_choice: 'required' }, 'unsupported_parameter', "Engine 'echo' cannot hold its output to a JSON schema"],
    ];
    for (const [fields, code, message] of cases) {
      const error = await expectError(await chat({ model: 'echo', messages: hello, ...fields }), 400, code);
      expect(error).toMatchObject({ param: 'tool_choice', message: expect.stringContaining(message) });
    }
    expect((await chat({ model: 'echo', messages: hello, tools, tool_choice: 'auto' })).status).toBe(200);
  });

  test('harmless fields (n: 1, user) are accepted', async () => {
    const response = await chat({ model: 'echo', messages: hello, n: 1, user: 'someone' });
    expect(response.status).toBe(200);
  });

  test('empty messages, an unknown role and non-text content are 400s naming the message', async () => {
    expect((await expectError(await chat({ model: 'echo', messages: [] }), 400, 'invalid_parameter')).message).toContain('messages');
    const role = await expectError(await chat({ model: 'echo', messages: [{ role: 'wizard', content: 'Hi' }] }), 400, 'invalid_parameter');
    expect(role.message).toContain('messages[0]');
    const content = await expectError(await chat({ model: 'echo', messages: [{ role: 'user', content: 42 }] }), 400, 'invalid_parameter');
    expect(content.message).toContain('messages[0].content');
    const image = { role: 'user', content: [{ type: 'image_url', image_url: { url: 'http://x' } }] };
    await expectError(await chat({ model: 'echo', messages: [image] }), 400, 'invalid_parameter');
  });

  test('a missing model is a 400 naming it', async () => {
    expect((await expectError(await chat({ messages: hello }), 400, 'invalid_parameter')).message).toContain('model');
  });
});

describe('model errors', () => {
  test('an unknown model is a 404 model_not_found, also through the official client', async () => {
    await expectError(await chat({ model: 'no-such-model', messages: hello }), 404, 'model_not_found');
    const error = await node.client.chat.completions
      .create({ model: 'no-such-model', messages: [{ role: 'user', content: 'Hi' }] })
      .catch((e: unknown) => e);
    expect(error).toBeInstanceOf(APIError);
    expect((error as APIError).status).toBe(404);
    expect((error as APIError).code).toBe('model_not_found');
  });

  test('a path-like model id is a 400 invalid_model_id', async () => {
    await expectError(await chat({ model: '../../etc/passwd', messages: hello }), 400, 'invalid_model_id');
    await expectError(await node.post('/api/models/load', { model_id: '/etc/passwd' }), 400, 'invalid_model_id');
  });

  test('a prompt longer than the context is a 400 context_length_exceeded', async () => {
    expect((await node.post('/api/models/load', { model_id: 'short', context_length: 4 })).status).toBe(200);
    await expectError(
      await node.post('/v1/completions', { model: 'short', prompt: 'one two three four five' }),
      400,
      'context_length_exceeded',
    );
    const streamed = await node.post('/v1/completions', { model: 'short', prompt: 'one two three four five', stream: true });
    await expectError(streamed, 400, 'context_length_exceeded');
  });

  test('an architecture no engine supports is a 400 architecture_mismatch', async () => {
    const error = await expectError(await chat({ model: 'nemotron-mini', messages: hello }), 400, 'architecture_mismatch');
    expect(error.message).toBe("Architecture 'nemotron' not supported by plugins 'echo', 'echo_slow'");
  });

  test('asking for another format than the model has is a 400 format_mismatch', async () => {
    await expectError(await node.post('/api/models/load', { model_id: 'echo', format: 'safetensors' }), 400, 'format_mismatch');
  });

  test('a model file that is not GGUF is a 422 model_corrupt', async () => {
    await expectError(await chat({ model: 'broken', messages: hello }), 422, 'model_corrupt');
  });

  test('a model larger than the VRAM limit is a 507 oom_vram', async () => {
    const error = await expectError(await node.post('/api/models/load', { model_id: 'huge', format: 'gguf' }), 507, 'oom_vram');
    expect(error.type).toBe('resource_error');
    expect(error.message).toMatch(/^Insufficient VRAM: required /);
    // The limit doing its job: a warning line for the operator, no error, no stack trace.
    const logged = logLines.find((line) => line.code === 'oom_vram');
    expect(logged).toMatchObject({ level: 40, msg: expect.stringMatching(/^request refused: Insufficient VRAM/) });
    expect(logged).not.toHaveProperty('err');
    expect(logLines.some((line) => line.level === 50 && (line.err as { code?: string } | undefined)?.code === 'oom_vram')).toBe(false);
  });
});

describe('routes', () => {
  test('an unknown path or method is a 404 not_found in the envelope, not an HTML page', async () => {
    await expectError(await fetch(`${node.baseUrl}/v2/everything`), 404, 'not_found');
    await expectError(await fetch(`${node.baseUrl}/v1/chat/completions`), 404, 'not_found');
  });
});
