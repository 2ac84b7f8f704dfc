import { randomUUID } from 'node:crypto';
import { apiError } from './errors.js';

/** A tool as OpenAI's chat API declares it. */
export interface FunctionTool {
  type: 'function';
  function: { name: string; description?: string | undefined; parameters?: Record<string, unknown> | undefined };
}

export type ToolChoice = 'none' | 'auto' | 'required' | { type: 'function'; function: { name: string } };

/** One call as the chat API answers it: the arguments are JSON text. */
export interface ToolCall {
  id: string;
  type: 'function';
  function: { name: string; arguments: string };
}

/**
 * The JSON Schema a forced call is held to (`tool_choice` `required`, or a named function): `{"name",
 * "arguments"}` for one of the tools (the named one), its arguments matching the tool's parameters; a list of
 * such calls when parallel calls are allowed. Null when the model chooses (`auto`, `none`, no tools): its
 * answer is text then.
 */
export function forcedCallSchema(
  tools: readonly FunctionTool[] | null | undefined,
  choice: ToolChoice | null | undefined,
  parallel: boolean,
): Record<string, unknown> | null {
  if (!tools?.length || choice === undefined || choice === null || choice === 'auto' || choice === 'none') {
    if (typeof choice === 'object' && choice !== null)
      throw apiError('invalid_parameter', 'tool_choice names a function, but there are no tools', 'tool_choice');
    if (choice === 'required') throw apiError('invalid_parameter', "tool_choice 'required' needs tools", 'tool_choice');
    return null;
  }
  const allowed = typeof choice === 'object' ? tools.filter((tool) => tool.function.name === choice.function.name) : tools;
  if (allowed.length === 0) {
    throw apiError(
      'invalid_parameter',
      `tool_choice names '${(choice as { function: { name: string } }).function.name}', which is not among the tools`,
      'tool_choice',
    );
  }
  const calls = allowed.map((tool) => ({
    type: 'object',
    properties: { name: { const: tool.function.name }, arguments: tool.function.parameters ?? { type: 'object' } },
    required: ['name', 'arguments'],
    additionalProperties: false,
  }));
  const call = calls.length === 1 ? calls[0]! : { anyOf: calls };
  return parallel ? { type: 'array', items: call, minItems: 1 } : call;
}

/** The calls in a forced call's answer (held to forcedCallSchema), as the chat API answers them. */
export function parseForcedCalls(text: string): ToolCall[] {
  const parsed = JSON.parse(text) as { name: string; arguments: unknown } | { name: string; arguments: unknown }[];
  return (Array.isArray(parsed) ? parsed : [parsed]).map((call) => ({
    id: `call_${randomUUID().replaceAll('-', '').slice(0, 24)}`,
    type: 'function',
    function: { name: call.name, arguments: JSON.stringify(call.arguments) },
  }));
}
