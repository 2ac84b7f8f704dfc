import { randomUUID } from 'node:crypto';
import type { TokenDetail } from '@llm-node/registry';
import type { ToolCall } from './tool-calls.js';

export type ApiFinishReason = 'stop' | 'length';

export interface Usage {
  prompt_tokens: number;
  completion_tokens: number;
  total_tokens: number;
}

/**
 * How one kind of completion (chat or raw text) is written, as SSE events or as one JSON body. Made per
 * request: the constant parts of every chunk (id, timestamps, model) are serialized once up front, so a
 * token costs one JSON.stringify of its text and a concatenation.
 */
export interface CompletionFormat {
  /** SSE written before the first token (the chat role delta). */
  readonly opening: string;
  tokenEvent(piece: string): string;
  tokenEventWithLogprob(piece: string, token: TokenDetail): string;
  /** The finishing chunk, the usage chunk when asked for, and `[DONE]`. */
  closing(finishReason: ApiFinishReason, usage: Usage | null): string;
  whole(text: string, finishReason: ApiFinishReason, usage: Usage, logprobs: TokenLogprobs | null): object;
}

/** How a chat answers with tool calls instead of text (finish_reason `tool_calls`). */
export interface ToolCallFormat {
  wholeCalls(content: string | null, calls: ToolCall[], usage: Usage): object;
  /** As a stream: the role and content, the calls (each with its index, id, name and whole arguments), the finish reason. */
  callEvents(content: string | null, calls: ToolCall[], usage: Usage | null): string;
}

/** The generated tokens' details, and where each one's text starts in the completion (UTF-16 offsets). */
export interface TokenLogprobs {
  tokens: TokenDetail[];
  textOffsets: number[];
}

function chunkBase(id: string, object: string, created: number, model: string): string {
  return `{"id":"${id}","object":"${object}","created":${created},"model":${JSON.stringify(model)}`;
}

function usageEvent(base: string, usage: Usage | null): string {
  return usage ? `data: ${base},"choices":[],"usage":${JSON.stringify(usage)}}\n\n` : '';
}

function chatLogprob(token: TokenDetail): object {
  return { token: token.text, logprob: token.logprob, bytes: token.bytes, top_logprobs: [] };
}

export function chatFormat(model: string): CompletionFormat & ToolCallFormat {
  const id = `chatcmpl-${randomUUID()}`;
  const created = Math.floor(Date.now() / 1000);
  const base = chunkBase(id, 'chat.completion.chunk', created, model);
  const choice = `data: ${base},"choices":[{"index":0,"delta":`;
  const head = `${choice}{"content":`;
  const tail = '},"logprobs":null,"finish_reason":null}]}\n\n';
  return {
    opening: `${choice}{"role":"assistant","content":""},"logprobs":null,"finish_reason":null}]}\n\n`,
    tokenEvent: (piece) => head + JSON.stringify(piece) + tail,
    tokenEventWithLogprob: (piece, token) =>
      `${head}${JSON.stringify(piece)}},"logprobs":{"content":[${JSON.stringify(chatLogprob(token))}]},"finish_reason":null}]}\n\n`,
    closing: (finishReason, usage) =>
      `${choice}{},"logprobs":null,"finish_reason":"${finishReason}"}]}\n\n${usageEvent(base, usage)}data: [DONE]\n\n`,
    whole: (text, finishReason, usage, logprobs) => ({
      id,
      object: 'chat.completion',
      created,
      model,
      choices: [
        {
          index: 0,
          message: { role: 'assistant', content: text },
          logprobs: logprobs ? { content: logprobs.tokens.map(chatLogprob) } : null,
          finish_reason: finishReason,
        },
      ],
      usage,
    }),
    wholeCalls: (content, calls, usage) => ({
      id,
      object: 'chat.completion',
      created,
      model,
      choices: [{ index: 0, message: { role: 'assistant', content, tool_calls: calls }, logprobs: null, finish_reason: 'tool_calls' }],
      usage,
    }),
    callEvents: (content, calls, usage) =>
      `${choice}{"role":"assistant","content":${JSON.stringify(content)}},"logprobs":null,"finish_reason":null}]}\n\n` +
      `${choice}${JSON.stringify({ tool_calls: calls.map((call, index) => ({ index, ...call })) })},"logprobs":null,"finish_reason":null}]}\n\n` +
      `${choice}{},"logprobs":null,"finish_reason":"tool_calls"}]}\n\n${usageEvent(base, usage)}data: [DONE]\n\n`,
  };
}

/** The legacy completions API's logprobs: parallel arrays, with where each token's text starts. */
function legacyLogprobs(logprobs: TokenLogprobs): object {
  return {
    tokens: logprobs.tokens.map((token) => token.text),
    token_logprobs: logprobs.tokens.map((token) => token.logprob),
    top_logprobs: null,
    text_offset: logprobs.textOffsets,
  };
}

export function textFormat(model: string): CompletionFormat {
  const id = `cmpl-${randomUUID()}`;
  const created = Math.floor(Date.now() / 1000);
  const base = chunkBase(id, 'text_completion', created, model);
  const head = `data: ${base},"choices":[{"index":0,"text":`;
  const tail = ',"logprobs":null,"finish_reason":null}]}\n\n';
  let textOffset = 0;
  return {
    opening: '',
    tokenEvent: (piece) => head + JSON.stringify(piece) + tail,
    tokenEventWithLogprob: (piece, token) => {
      const logprobs = JSON.stringify(legacyLogprobs({ tokens: [token], textOffsets: [textOffset] }));
      textOffset += piece.length;
      return `${head}${JSON.stringify(piece)},"logprobs":${logprobs},"finish_reason":null}]}\n\n`;
    },
    closing: (finishReason, usage) =>
      `${head}"","logprobs":null,"finish_reason":"${finishReason}"}]}\n\n${usageEvent(base, usage)}data: [DONE]\n\n`,
    whole: (text, finishReason, usage, logprobs) => ({
      id,
      object: 'text_completion',
      created,
      model,
      choices: [{ index: 0, text, logprobs: logprobs ? legacyLogprobs(logprobs) : null, finish_reason: finishReason }],
      usage,
    }),
  };
}
