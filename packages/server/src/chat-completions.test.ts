import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { startTestNode, type TestNode } from './testing/test-node.js';

let node: TestNode;

beforeAll(async () => {
  node = await startTestNode();
});

afterAll(async () => {
  await node.close();
});

// The echo engine answers with the prompt it was given, word token by word token: the chat's content is
// the prompt the server rendered (here with the ChatML fallback, as the model has no template).
const hello = [{ role: 'user' as const, content: 'Hello there!' }];
const helloPrompt = '<|im_start|>user\nHello there!<|im_end|>\n<|im_start|>assistant\n';
const helloTokens = ['<|im_start|>user', '\nHello', ' there!<|im_end|>', '\n<|im_start|>assistant', '\n'];

describe('chat completions', () => {
  test('answers with the assistant message, finish reason and usage', async () => {
    const completion = await node.client.chat.completions.create({ model: 'echo', messages: hello });
    expect(completion.object).toBe('chat.completion');
    expect(completion.model).toBe('echo');
    expect(completion.choices).toHaveLength(1);
    expect(completion.choices[0]!.message).toEqual({ role: 'assistant', content: helloPrompt });
    expect(completion.choices[0]!.finish_reason).toBe('stop');
    expect(completion.usage).toEqual({ prompt_tokens: 5, completion_tokens: 5, total_tokens: 10 });
  });

  test('streams the role first, then one event per token, the finish reason and [DONE]', async () => {
    const stream = await node.client.chat.completions.create({ model: 'echo', messages: hello, stream: true });
    const chunks = [];
    for await (const chunk of stream) chunks.push(chunk);
    expect(chunks[0]!.choices[0]!.delta).toEqual({ role: 'assistant', content: '' });
    const pieces = chunks.slice(1, -1).map((chunk) => chunk.choices[0]!.delta.content);
    expect(pieces).toEqual(helloTokens);
    expect(chunks.at(-1)!.choices[0]!.finish_reason).toBe('stop');
    expect(new Set(chunks.map((chunk) => chunk.id)).size).toBe(1);
    expect(chunks.every((chunk) => chunk.object === 'chat.completion.chunk' && chunk.usage == null)).toBe(true);
  });

  test('streams usage in a last chunk when stream_options.include_usage is set', async () => {
    const stream = await node.client.chat.completions.create({
      model: 'echo',
      messages: hello,
      stream: true,
      stream_options: { include_usage: true },
    });
    const chunks = [];
    for await (const chunk of stream) chunks.push(chunk);
    const last = chunks.at(-1)!;
    expect(last.choices).toEqual([]);
    expect(last.usage).toEqual({ prompt_tokens: 5, completion_tokens: 5, total_tokens: 10 });
    expect(chunks.at(-2)!.choices[0]!.finish_reason).toBe('stop');
  });

  test('stops at max_tokens with finish reason length', async () => {
    const completion = await node.client.chat.completions.create({ model: 'echo', messages: hello, max_tokens: 2 });
    expect(completion.choices[0]!.message.content).toBe('<|im_start|>user\nHello');
    expect(completion.choices[0]!.finish_reason).toBe('length');
    expect(completion.usage?.completion_tokens).toBe(2);
  });

  test('max_completion_tokens limits as max_tokens does', async () => {
    const completion = await node.client.chat.completions.create({ model: 'echo', messages: hello, max_completion_tokens: 1 });
    expect(completion.choices[0]!.message.content).toBe('<|im_start|>user');
    expect(completion.choices[0]!.finish_reason).toBe('length');
  });

  test('ends before a stop sequence', async () => {
    const completion = await node.client.chat.completions.create({ model: 'echo', messages: hello, stop: ['there'] });
    expect(completion.choices[0]!.message.content).toBe('<|im_start|>user\nHello ');
    expect(completion.choices[0]!.finish_reason).toBe('stop');
  });

  test('goes on past the end of generation with ignore_eos, until max_tokens', async () => {
    const body = { model: 'echo', messages: hello, stream: true, max_tokens: 8, ignore_eos: true };
    // ignore_eos is llama.cpp's extension; the official client passes unknown fields through as they are.
    const stream = await node.client.chat.completions.create(body as typeof body & { stream: true });
    const pieces: string[] = [];
    let finish: string | null = null;
    for await (const chunk of stream) {
      const content = chunk.choices[0]?.delta.content;
      if (content) pieces.push(content);
      finish = chunk.choices[0]?.finish_reason ?? finish;
    }
    expect(pieces).toEqual([...helloTokens, ' 6', ' 7', ' 8']);
    expect(finish).toBe('length');
  });

  test('gives each token its logprob when logprobs is set, streamed or not', async () => {
    const completion = await node.client.chat.completions.create({ model: 'echo', messages: hello, logprobs: true });
    expect(completion.choices[0]!.logprobs!.content!.map((entry) => entry.token)).toEqual(helloTokens);
    expect(completion.choices[0]!.logprobs!.content![0]).toEqual({
      token: '<|im_start|>user',
      logprob: -0.25,
      bytes: [...Buffer.from('<|im_start|>user')],
      top_logprobs: [],
    });
    const stream = await node.client.chat.completions.create({ model: 'echo', messages: hello, logprobs: true, stream: true });
    const streamed = [];
    for await (const chunk of stream) streamed.push(...(chunk.choices[0]?.logprobs?.content ?? []));
    expect(streamed.map((entry) => entry.token)).toEqual(helloTokens);
    expect(streamed.every((entry) => entry.logprob === -0.25)).toBe(true);
  });

  test('accepts content as an array of text parts', async () => {
    const completion = await node.client.chat.completions.create({
      model: 'echo',
      messages: [
        {
          role: 'user',
          content: [
            { type: 'text', text: 'Hello' },
            { type: 'text', text: 'there!' },
          ],
        },
      ],
    });
    expect(completion.choices[0]!.message.content).toBe('<|im_start|>user\nHello\nthere!<|im_end|>\n<|im_start|>assistant\n');
  });

  test('answers a call the model wrote in its own syntax as tool_calls, streamed or not (tool_choice auto)', async () => {
    // The echo engine says back the rendered prompt: a call written in the message is the model's answer.
    const tools = [{ type: 'function' as const, function: { name: 'add', parameters: { type: 'object' } } }];
    const messages = [{ role: 'user' as const, content: 'Sum: <tool_call>{"name": "add", "arguments": {"a": 1, "b": 2}}</tool_call>' }];
    const completion = await node.client.chat.completions.create({ model: 'echo', messages, tools });
    const { message, finish_reason } = completion.choices[0]!;
    expect(finish_reason).toBe('tool_calls');
    expect(message.content).toBe('<|im_start|>user\nSum:');
    expect(message.tool_calls).toEqual([
      { id: expect.stringMatching(/^call_/), type: 'function', function: { name: 'add', arguments: '{"a":1,"b":2}' } },
    ]);

    const stream = await node.client.chat.completions.create({ model: 'echo', messages, tools, stream: true });
    const deltas = [];
    for await (const chunk of stream) deltas.push(chunk.choices[0]);
    expect(deltas.at(-1)!.finish_reason).toBe('tool_calls');
    expect(deltas.flatMap((d) => d?.delta.tool_calls ?? []).map((c) => [c.index, c.function?.name])).toEqual([[0, 'add']]);

    // A call to a tool it was not given is text.
    const other = await node.client.chat.completions.create({
      model: 'echo',
      messages,
      tools: [{ ...tools[0]!, function: { name: 'sub' } }],
    });
    expect(other.choices[0]!.finish_reason).toBe('stop');
    expect(other.choices[0]!.message.tool_calls).toBeUndefined();
  });

  test('serves 32 concurrent streams, each with its own answer', async () => {
    const answers = await Promise.all(
      Array.from({ length: 32 }, async (_, i) => {
        const stream = await node.client.chat.completions.create({
          model: 'echo',
          messages: [{ role: 'user', content: `Story number ${i}.` }],
          stream: true,
          max_tokens: 40,
          ignore_eos: true,
        } as Parameters<typeof node.client.chat.completions.create>[0] & { stream: true });
        let content = '';
        let events = 0;
        let finish: string | null = null;
        for await (const chunk of stream) {
          const piece = chunk.choices[0]?.delta.content;
          if (piece) {
            content += piece;
            events += 1;
          }
          finish = chunk.choices[0]?.finish_reason ?? finish;
        }
        return { i, content, events, finish };
      }),
    );
    for (const { i, content, events, finish } of answers) {
      const prompt = `<|im_start|>user\nStory number ${i}.<|im_end|>\n<|im_start|>assistant\n`;
      const counters = Array.from({ length: 34 }, (_, k) => ` ${k + 7}`).join('');
      expect(content).toBe(prompt + counters);
      expect(events).toBe(40);
      expect(finish).toBe('length');
    }
  });
});
