import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { startTestNode, type TestNode } from './testing/test-node.js';

let node: TestNode;

beforeAll(async () => {
  node = await startTestNode();
});

afterAll(async () => {
  await node.close();
});

// The raw prompt reaches the engine as it is: the echo engine gives it back word token by word token.
describe('raw completions', () => {
  test('answers with the text, finish reason and usage', async () => {
    const completion = await node.client.completions.create({ model: 'echo', prompt: 'The quick brown fox' });
    expect(completion.object).toBe('text_completion');
    expect(completion.choices[0]!.text).toBe('The quick brown fox');
    expect(completion.choices[0]!.finish_reason).toBe('stop');
    expect(completion.usage).toEqual({ prompt_tokens: 4, completion_tokens: 4, total_tokens: 8 });
  });

  test('streams one event per token, then the finish reason and usage', async () => {
    const stream = await node.client.completions.create({
      model: 'echo',
      prompt: 'The quick brown fox',
      stream: true,
      max_tokens: 3,
      stream_options: { include_usage: true },
    });
    const chunks = [];
    for await (const chunk of stream) chunks.push(chunk);
    expect(chunks.slice(0, 3).map((chunk) => chunk.choices[0]!.text)).toEqual(['The', ' quick', ' brown']);
    expect(chunks[3]!.choices[0]!.finish_reason).toBe('length');
    expect(chunks[4]!.usage).toEqual({ prompt_tokens: 4, completion_tokens: 3, total_tokens: 7 });
  });

  test('accepts a prompt given as a list of one string', async () => {
    const completion = await node.client.completions.create({ model: 'echo', prompt: ['Just one'] });
    expect(completion.choices[0]!.text).toBe('Just one');
  });

  test('ends before a stop sequence', async () => {
    const completion = await node.client.completions.create({ model: 'echo', prompt: 'one two three four', stop: ' three' });
    expect(completion.choices[0]!.text).toBe('one two');
    expect(completion.choices[0]!.finish_reason).toBe('stop');
  });

  test('gives token logprobs and text offsets with logprobs 0', async () => {
    const completion = await node.client.completions.create({ model: 'echo', prompt: 'one two three', logprobs: 0 });
    expect(completion.choices[0]!.logprobs).toEqual({
      tokens: ['one', ' two', ' three'],
      token_logprobs: [-0.25, -0.25, -0.25],
      top_logprobs: null,
      text_offset: [0, 3, 7],
    });
  });
});
