import { randomUUID } from 'node:crypto';
import { apiError } from './errors.js';

/** A tool as OpenAI's chat API declares it. */
interface FunctionTool {
  type: 'function';
  function: { name: string; parameters?: Record<string, unknown> | undefined };
}

type ToolChoice = 'none' | 'auto' | 'required' | { type: 'function'; function: { name: string } };

/** One call as the chat API answers it: the arguments are JSON text. */
export interface ToolCall {
  id: string;
  type: 'function';
  function: { name: string; arguments: string };
}

/**
 * The JSON Schema a forced call is held to (`tool_choice` `required`, or a named function): `{"name",
 * "arguments"}` for one of the tools (the named one), its arguments matching the tool's parameters; a list of
 * such calls when parallel calls are allowed. Null when no call is forced (`auto`, `none`, unset).
 */
export function forcedCallSchema(
  tools: readonly FunctionTool[] | null | undefined,
  choice: ToolChoice | null | undefined,
  parallel: boolean,
): Record<string, unknown> | null {
  const named = typeof choice === 'object' && choice !== null ? choice.function.name : null;
  if (choice !== 'required' && named === null) return null; // auto, none or unset: no call is forced
  if (!tools?.length) {
    throw apiError('invalid_parameter', `tool_choice ${named === null ? "'required'" : `'${named}'`} needs tools`, 'tool_choice');
  }
  const allowed = named === null ? tools : tools.filter((tool) => tool.function.name === named);
  if (allowed.length === 0)
    throw apiError('invalid_parameter', `tool_choice names '${named}', which is not among the tools`, 'tool_choice');
  const calls = allowed.map((tool) => ({
    type: 'object',
    properties: { name: { const: tool.function.name }, arguments: tool.function.parameters ?? { type: 'object' } },
    required: ['name', 'arguments'],
    additionalProperties: false,
  }));
  const call = calls.length === 1 ? calls[0]! : { anyOf: calls };
  return parallel ? { type: 'array', items: call, minItems: 1 } : call;
}

/** An answer read as tool calls: the text before them (the message's content), and the calls. */
export interface ToolCallAnswer {
  content: string | null;
  calls: ToolCall[];
}

/** A forced call's answer (held to forcedCallSchema) as calls; null in the one case its JSON is not whole (an engine that broke the schema). */
export function parseForcedCalls(text: string): ToolCallAnswer | null {
  const parsed = parseJson(text) as { name: string; arguments: unknown } | { name: string; arguments: unknown }[] | undefined;
  if (parsed === undefined) return null;
  return { content: null, calls: (Array.isArray(parsed) ? parsed : [parsed]).map(answeredCall) };
}

/**
 * The calls a model wrote in its own syntax when it chose to call (`tool_choice` `auto`), by the families whose
 * templates ship with llama.cpp: Hermes, Qwen 2.5 and 3 and most others (`<tool_call>{"name","arguments"}</tool_call>`),
 * Mistral (`[TOOL_CALLS][{"name","arguments"}, ...]`), Functionary v3.1 (`<function=name>{...}</function>`), and
 * Llama 3.x (the whole answer one `{"name","parameters"}` object, after `<|python_tag|>` or not). Only calls to the
 * request's tools count; anything else (no call, a call to a tool it was not given, broken JSON) is null: the
 * answer is text. The text before the first call is the message's content.
 */
export function parseModelToolCalls(text: string, toolNames: ReadonlySet<string>): ToolCallAnswer | null {
  const found = hermesCalls(text) ?? mistralCalls(text) ?? functionaryCalls(text) ?? llama3Call(text);
  if (found === null || found.calls.length === 0) return null;
  if (!found.calls.every((call) => toolNames.has(call.name) && isObject(call.arguments))) return null;
  return {
    content: found.content.trim() === '' ? null : found.content.trim(),
    calls: found.calls.map(answeredCall),
  };
}

/** A call as the chat API answers it: an id of its own, the arguments as JSON text. */
function answeredCall({ name, arguments: args }: { name: string; arguments: unknown }): ToolCall {
  return {
    id: `call_${randomUUID().replaceAll('-', '').slice(0, 24)}`,
    type: 'function',
    function: { name, arguments: JSON.stringify(args) },
  };
}

interface WrittenCalls {
  content: string;
  calls: { name: string; arguments: unknown }[];
}

const isObject = (value: unknown): value is Record<string, unknown> => typeof value === 'object' && value !== null && !Array.isArray(value);

function parseJson(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return undefined;
  }
}

function hermesCalls(text: string): WrittenCalls | null {
  const start = text.indexOf('<tool_call>');
  if (start < 0) return null;
  const calls = [...text.slice(start).matchAll(/<tool_call>\s*([\s\S]*?)\s*<\/tool_call>/g)].map((m) => parseJson(m[1]!));
  if (!calls.every((call) => isObject(call) && typeof call.name === 'string')) return null;
  return { content: text.slice(0, start), calls: calls as WrittenCalls['calls'] };
}

function mistralCalls(text: string): WrittenCalls | null {
  const start = text.indexOf('[TOOL_CALLS]');
  if (start < 0) return null;
  const calls = parseJson(text.slice(start + '[TOOL_CALLS]'.length).trim());
  if (!Array.isArray(calls) || !calls.every((call) => isObject(call) && typeof call.name === 'string')) return null;
  return { content: text.slice(0, start), calls };
}

function functionaryCalls(text: string): WrittenCalls | null {
  const start = text.indexOf('<function=');
  if (start < 0) return null;
  const calls = [...text.slice(start).matchAll(/<function=([\w-]+)>([\s\S]*?)<\/function>/g)].map((m) => ({
    name: m[1]!,
    arguments: parseJson(m[2]!),
  }));
  return { content: text.slice(0, start), calls };
}

function llama3Call(text: string): WrittenCalls | null {
  const call = parseJson(text.replace('<|python_tag|>', '').trim());
  if (!isObject(call) || typeof call.name !== 'string') return null;
  return { content: '', calls: [{ name: call.name, arguments: call.parameters ?? call.arguments }] };
}
