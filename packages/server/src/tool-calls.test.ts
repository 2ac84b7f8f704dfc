import { describe, expect, it } from 'vitest';
import { parseModelToolCalls } from './tool-calls.js';

const tools = new Set(['get_weather', 'add']);
const argumentsOf = (text: string) =>
  parseModelToolCalls(text, tools)?.calls.map((c) => [c.function.name, JSON.parse(c.function.arguments)]);

describe('tool calls in the syntax a model writes them in', () => {
  it('reads Hermes and Qwen calls, several of them, with the text before them as content', () => {
    const text =
      'Let me check.\n<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n</tool_call>\n<tool_call>{"name": "add", "arguments": {"a": 1, "b": 2}}</tool_call>';
    const parsed = parseModelToolCalls(text, tools)!;
    expect(parsed.content).toBe('Let me check.');
    expect(argumentsOf(text)).toEqual([
      ['get_weather', { city: 'Paris' }],
      ['add', { a: 1, b: 2 }],
    ]);
    expect(parsed.calls.map((c) => c.id)).toEqual([expect.stringMatching(/^call_\w{24}$/), expect.stringMatching(/^call_\w{24}$/)]);
  });

  it('reads Mistral, Functionary v3.1 and Llama 3.x calls', () => {
    expect(argumentsOf('[TOOL_CALLS] [{"name": "add", "arguments": {"a": 2, "b": 3}}]')).toEqual([['add', { a: 2, b: 3 }]]);
    expect(argumentsOf('<function=get_weather>{"city": "Oslo"}</function>')).toEqual([['get_weather', { city: 'Oslo' }]]);
    expect(argumentsOf('{"name": "add", "parameters": {"a": 5, "b": 8}}')).toEqual([['add', { a: 5, b: 8 }]]);
    expect(argumentsOf('<|python_tag|>{"name": "add", "parameters": {"a": 1, "b": 1}}')).toEqual([['add', { a: 1, b: 1 }]]);
  });

  it('leaves as text what is not a call to one of the tools', () => {
    for (const text of [
      'The weather in Paris is mild.',
      '<tool_call>{"name": "delete_everything", "arguments": {}}</tool_call>',
      '<tool_call>{"name": "add", "arguments": {"a": </tool_call>',
      '{"name": "add", "parameters": "not an object"}',
      '{"answer": 42}',
    ]) {
      expect(parseModelToolCalls(text, tools), text).toBeNull();
    }
  });
});
