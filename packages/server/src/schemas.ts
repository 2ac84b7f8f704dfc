import { z } from 'zod';
import { MODEL_FORMATS } from '@llm-node/manifest';
import type { GenerateRequest } from '@llm-node/registry';
import { apiError } from './errors.js';

// Objects are strict: a field the server does not know is a 400 naming it, never silently ignored.

const modelId = z
  .string({ error: (issue) => (issue.input === undefined ? 'is required' : 'must be a string') })
  .min(1, 'must not be empty');

/** Fields chat and raw completions share: sampling, limits and streaming. */
const generationFields = {
  model: modelId,
  stream: z.boolean().nullish(),
  stream_options: z.strictObject({ include_usage: z.boolean().nullish() }).nullish(),
  max_tokens: z.int().min(1).nullish(),
  temperature: z.number().min(0).max(2).nullish(),
  top_p: z.number().gt(0).max(1).nullish(),
  /** llama.cpp extensions, as its server accepts them. */
  top_k: z.int().min(0).nullish(),
  min_p: z.number().min(0).max(1).nullish(),
  ignore_eos: z.boolean().nullish(),
  presence_penalty: z.number().min(-2).max(2).nullish(),
  frequency_penalty: z.number().min(-2).max(2).nullish(),
  seed: z.int().min(0).nullish(),
  stop: z
    .union([z.string().min(1), z.array(z.string().min(1)).max(4)], { error: 'must be a string or a list of at most 4 non-empty strings' })
    .nullish(),
  n: z.int().min(1).nullish(),
  /** Added to those tokens' logits before each token is drawn: -100 all but bans a token, 100 all but forces it. */
  logit_bias: z.record(z.string().regex(/^\d+$/, 'keys must be token ids'), z.number().min(-100).max(100)).nullish(),
  /** Structured output: JSON of any object, or JSON that a schema accepts, held to it by the engine. */
  response_format: z
    .discriminatedUnion('type', [
      z.strictObject({ type: z.literal('text') }),
      z.strictObject({ type: z.literal('json_object') }),
      z.strictObject({
        type: z.literal('json_schema'),
        json_schema: z.strictObject({
          name: z.string().min(1),
          description: z.string().optional(),
          schema: z.record(z.string(), z.unknown()).optional(),
          strict: z.boolean().nullish(),
        }),
      }),
    ])
    .nullish(),
  /** Accepted and ignored on purpose: an end-user id for the caller's own abuse tracking. */
  user: z.string().nullish(),
};

const textPart = z.strictObject({ type: z.literal('text'), text: z.string() });
const content = z.union([z.string(), z.array(textPart)], {
  error: 'must be a string or a list of {"type": "text", "text": "..."} parts',
});

const chatMessage = z.discriminatedUnion('role', [
  z.strictObject({ role: z.enum(['system', 'developer', 'user']), content, name: z.string().optional() }),
  z
    .strictObject({
      role: z.literal('assistant'),
      content: content.nullish(),
      name: z.string().optional(),
      tool_calls: z.array(z.record(z.string(), z.unknown())).optional(),
    })
    .refine((message) => message.content != null || message.tool_calls !== undefined, {
      message: 'an assistant message needs content or tool_calls',
    }),
  z.strictObject({ role: z.literal('tool'), content, tool_call_id: z.string() }),
]);

export const chatCompletionBody = z.strictObject({
  ...generationFields,
  messages: z.array(chatMessage).min(1, 'must hold at least one message'),
  max_completion_tokens: z.int().min(1).nullish(),
  logprobs: z.boolean().nullish(),
  top_logprobs: z.int().min(0).max(20).nullish(),
  /** Handed to the chat template, as Hugging Face's apply_chat_template does. */
  tools: z
    .array(
      z.object({
        type: z.literal('function'),
        function: z.looseObject({
          name: z.string().regex(/^[A-Za-z0-9_-]{1,64}$/, 'must be 1 to 64 letters, digits, _ or -'),
          description: z.string().optional(),
          parameters: z.record(z.string(), z.unknown()).optional(),
        }),
      }),
    )
    .nullish(),
  /** `required` or a named function: the answer is a call, held to the tools' parameters; `auto`, `none`: text. */
  tool_choice: z
    .union([
      z.enum(['none', 'auto', 'required']),
      z.strictObject({ type: z.literal('function'), function: z.strictObject({ name: z.string() }) }),
    ])
    .nullish(),
  parallel_tool_calls: z.boolean().nullish(),
});
export type ChatCompletionBody = z.infer<typeof chatCompletionBody>;
export type ChatMessage = z.infer<typeof chatMessage>;

export const completionBody = z.strictObject({
  ...generationFields,
  prompt: z.union([z.string(), z.array(z.string()).length(1, 'one prompt per request')]),
  /** The legacy API's count of alternatives per token; only 0 (the chosen token's logprob) is served. */
  logprobs: z.int().min(0).max(5).nullish(),
});
export type CompletionBody = z.infer<typeof completionBody>;

/** OpenAI's cap on the inputs of one embeddings request. */
export const MAX_EMBEDDING_INPUTS = 2048;

export const embeddingsBody = z.strictObject({
  model: modelId,
  input: z.union(
    [
      z.string().min(1),
      z.array(z.string().min(1)).min(1).max(MAX_EMBEDDING_INPUTS),
      // Token ids, as OpenAI also takes them: refused with a message (the engine ABI embeds text).
      z.array(z.int()).min(1),
      z.array(z.array(z.int()).min(1)).min(1),
    ],
    { error: `must be a non-empty string or a list of 1 to ${MAX_EMBEDDING_INPUTS} non-empty strings` },
  ),
  encoding_format: z.enum(['float', 'base64']).nullish(),
  dimensions: z.int().min(1).nullish(),
  /** Accepted and ignored on purpose, as in completions. */
  user: z.string().nullish(),
});
export type EmbeddingsBody = z.infer<typeof embeddingsBody>;

export const loadModelBody = z.strictObject({
  model_id: modelId,
  format: z.enum(MODEL_FORMATS).optional(),
  context_length: z.int().min(1).optional(),
  parallel: z.int().min(1).optional(),
  stream: z.boolean().optional(),
});

export const unloadModelBody = z.strictObject({ model_id: modelId });

/** Validates a request body; every failure is one 400 that names the fields at fault. */
export function parseBody<T>(schema: z.ZodType<T>, body: unknown): T {
  if (typeof body !== 'object' || body === null || Array.isArray(body)) {
    throw apiError('invalid_request_error', 'The request body must be a JSON object (Content-Type: application/json)');
  }
  const parsed = schema.safeParse(body);
  if (parsed.success) return parsed.data;
  const unknownFields = parsed.error.issues.flatMap((issue) =>
    issue.code === 'unrecognized_keys' ? issue.keys.map((key) => fieldName([...issue.path, key])) : [],
  );
  if (unknownFields.length > 0) {
    throw apiError('unsupported_parameter', `Unsupported parameter(s): ${unknownFields.join(', ')}`, unknownFields[0]);
  }
  const problems = parsed.error.issues.map((issue) => `${fieldName(issue.path)}: ${issue.message}`);
  throw apiError(
    'invalid_parameter',
    `Invalid request: ${problems.join('; ')}`,
    fieldName(parsed.error.issues[0]?.path ?? []) || undefined,
  );
}

/** `messages[0].content`, as a client would write the path. */
function fieldName(path: readonly PropertyKey[]): string {
  return path.reduce<string>(
    (name, key) => (typeof key === 'number' ? `${name}[${key}]` : name === '' ? String(key) : `${name}.${String(key)}`),
    '',
  );
}

/** Values the schema allows but the server cannot serve: a 400 that says which. */
function refuseUnsupported(body: ChatCompletionBody | CompletionBody, topLogprobs: number): void {
  if ((body.n ?? 1) > 1) throw apiError('unsupported_parameter', 'n > 1 is not supported: ask for one choice per request', 'n');
  if (topLogprobs > 0) {
    const param = 'messages' in body ? 'top_logprobs' : 'logprobs';
    throw apiError(
      'unsupported_parameter',
      'Alternatives per token (top_logprobs, or logprobs > 0 in completions) are not supported',
      param,
    );
  }
}

/**
 * The engine request for a validated chat or completion body, less its prompt. `forcedCall` is the schema a
 * forced tool call is held to (tool-calls.ts).
 */
export function generationOptions(
  body: ChatCompletionBody | CompletionBody,
  forcedCall: Record<string, unknown> | null = null,
): Omit<GenerateRequest, 'prompt' | 'modelId'> {
  const chat = 'messages' in body;
  if (forcedCall && body.response_format && body.response_format.type !== 'text') {
    throw apiError('invalid_parameter', 'response_format and a forced tool call (tool_choice) cannot both shape the answer', 'tool_choice');
  }
  const wantsLogprobs = chat ? body.logprobs === true : body.logprobs != null;
  refuseUnsupported(body, (chat ? body.top_logprobs : body.logprobs) ?? 0);
  return {
    maxTokens: (chat ? body.max_completion_tokens : undefined) ?? body.max_tokens ?? undefined,
    temperature: body.temperature ?? undefined,
    topP: body.top_p ?? undefined,
    topK: body.top_k ?? undefined,
    minP: body.min_p ?? undefined,
    presencePenalty: body.presence_penalty ?? undefined,
    frequencyPenalty: body.frequency_penalty ?? undefined,
    seed: body.seed ?? undefined,
    stop: typeof body.stop === 'string' ? [body.stop] : (body.stop ?? undefined),
    jsonSchema: forcedCall ? JSON.stringify(forcedCall) : jsonSchemaOf(body.response_format),
    logitBias: body.logit_bias ? Object.fromEntries(Object.entries(body.logit_bias).map(([id, bias]) => [Number(id), bias])) : undefined,
    logprobs: wantsLogprobs,
    ignoreEos: body.ignore_eos ?? undefined,
    // As llama.cpp's server tokenizes: the tokenizer's own BOS added, special-token text read as tokens.
    addSpecial: true,
    parseSpecial: true,
  };
}

/** The schema the engine holds the output to: any JSON object for `json_object`, any JSON without a schema. */
function jsonSchemaOf(format: ChatCompletionBody['response_format']): string | undefined {
  if (format?.type === 'json_object') return JSON.stringify({ type: 'object' });
  if (format?.type === 'json_schema') return JSON.stringify(format.json_schema.schema ?? {});
  return undefined;
}
