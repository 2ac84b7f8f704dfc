import { once } from 'node:events';
import { performance } from 'node:perf_hooks';
import type { Response } from 'express';
import type { GenerateRequest, GenerateResult, Generation, TokenChunk } from '@llm-node/registry';
import type { ModelInfo } from '@llm-node/registry';
import type { ApiFinishReason, CompletionFormat, TokenLogprobs, ToolCallFormat, Usage } from './completion-format.js';
import type { ServerContext } from './context.js';
import { apiError, toApiError } from './errors.js';
import { parseForcedCalls, parseModelToolCalls } from './tool-calls.js';

export interface CompletionJob {
  modelId: string;
  stream: boolean;
  includeUsage: boolean;
  options: Omit<GenerateRequest, 'prompt' | 'modelId'>;
  /** The prompt for the model that serves the request (a chat is rendered with the model's own template). */
  prompt(model: ModelInfo): string | Promise<string>;
  format: CompletionFormat;
  /**
   * Tools the answer may call, and the format calls are answered in: `forced` (tool_choice `required` or a
   * function) when the answer is held to a schema of calls, else the model's own call syntax is read at the
   * end. Null: the answer is text.
   */
  toolCalls: { format: ToolCallFormat; forced: boolean; names: ReadonlySet<string> } | null;
}

/** When the engine was asked, and when its first token came back (performance.now() ms). */
interface Timing {
  startedAt: number;
  firstTokenAt: number | null;
}

const SSE_HEADERS = {
  'Content-Type': 'text/event-stream; charset=utf-8',
  'Cache-Control': 'no-cache',
  // Tells reverse proxies (nginx) not to buffer the stream either.
  'X-Accel-Buffering': 'no',
};

const ignore = () => {};

/** Most token events that go out in one socket write. */
const TOKENS_PER_WRITE = 64;

/**
 * Serves one chat or raw completion: leases the model (loading it on first use), runs the generation
 * under a signal that aborts when the client leaves or the server shuts down, and answers as one JSON
 * body or as SSE, one event per token. Failures before the first token are plain HTTP errors; later
 * ones end the stream with an error event.
 */
export function serveCompletion(context: ServerContext, res: Response, job: CompletionJob): Promise<void> {
  res.locals.generation = { model: job.modelId };
  const served = serve(context, res, job);
  // The request's log line waits for this: a client that left early is logged with what its generation did.
  res.locals.served = served.catch(() => undefined);
  return served;
}

async function serve(context: ServerContext, res: Response, job: CompletionJob): Promise<void> {
  // Before the lease: a client that leaves while its model loads must not leave a generation behind.
  const signal = context.lifecycle.generationSignal(res);
  const lease = await context.registry.acquireModel(job.modelId);
  try {
    if (signal.aborted) {
      const error = context.lifecycle.abortError(signal);
      if (error) throw error;
      return;
    }
    requireCapabilities(context, lease.model.engineId, job);
    const prompt = await job.prompt(lease.model.info);
    const timing: Timing = { startedAt: performance.now(), firstTokenAt: null };
    const generation = lease.generate({ ...job.options, prompt }, { signal });
    // Every path below settles the result; this only keeps an early failure from counting as unhandled.
    generation.result.catch(ignore);
    context.metrics.activeGenerations.inc();
    try {
      const answering: Answering = { context, res, job, generation, signal, timing };
      if (job.toolCalls) await answerToolCalls(answering, job.toolCalls);
      else if (job.stream) await streamCompletion(answering);
      else await answerCompletion(answering);
    } finally {
      context.metrics.activeGenerations.dec();
      // The model stays leased until the engine has really finished with it.
      await generation.result.catch(ignore);
    }
  } finally {
    lease.release();
  }
}

/** A generation being answered: what both ways of answering it (streamed, whole) work from. */
interface Answering {
  context: ServerContext;
  res: Response;
  job: CompletionJob;
  generation: Generation;
  signal: AbortSignal;
  timing: Timing;
}

async function streamCompletion({ context, res, job, generation, signal, timing }: Answering): Promise<void> {
  const { format } = job;
  // Waiting for the first token before the headers lets a prompt the engine refuses (context overflow)
  // still be answered with its HTTP status.
  const first = await generation.next();
  res.writeHead(200, SSE_HEADERS);
  res.write(format.opening);
  try {
    if (!first.done) {
      timing.firstTokenAt = performance.now();
      await writeTokens(context, res, first.value, format, signal, generation);
    }
    for await (const chunk of generation) {
      if (signal.aborted) break;
      await writeTokens(context, res, chunk, format, signal, generation);
    }
    const result = await generation.result;
    recordFigures(context, res, job, result, timing);
    if (signal.aborted) endAborted(context, res, signal);
    else res.end(format.closing(apiFinishReason(result), job.includeUsage ? usageOf(result) : null));
  } catch (error) {
    if (error instanceof ClientNotReading) {
      context.logger.warn({ model: job.modelId, unread: generation.buffered }, 'the client stopped reading its stream; ended it');
      await generation.return?.();
      res.destroy();
    } else if (signal.aborted) endAborted(context, res, signal);
    else {
      context.logger.error({ err: error, model: job.modelId }, 'generation failed mid-stream');
      res.end(`data: ${JSON.stringify(toApiError(error).toJSON())}\n\n`);
    }
  }
}

/** A stream cut short: the client is gone (nothing to write), or the server is shutting down (say so). */
function endAborted(context: ServerContext, res: Response, signal: AbortSignal): void {
  const error = context.lifecycle.abortError(signal);
  if (error) res.end(`data: ${JSON.stringify(error.toJSON())}\n\n`);
}

/** The whole answer, read to its end; null when the client left meanwhile, the shutdown's error when the server ended it. */
async function readWhole({
  context,
  res,
  job,
  generation,
  signal,
  timing,
}: Answering): Promise<{ text: string; logprobs: TokenLogprobs | null; result: GenerateResult } | null> {
  let text = '';
  const logprobs: TokenLogprobs | null = job.options.logprobs ? { tokens: [], textOffsets: [] } : null;
  for await (const chunk of generation) {
    timing.firstTokenAt ??= performance.now();
    if (logprobs && chunk.tokens) {
      // A loop, not push(...tokens): a chunk can hold more tokens than a call can take arguments.
      for (let i = 0; i < chunk.tokenCount; i++) {
        logprobs.textOffsets.push(text.length + (i === 0 ? 0 : chunk.pieceEnds[i - 1]!));
        logprobs.tokens.push(chunk.tokens[i]!);
      }
    }
    text += chunk.text;
  }
  const result = await generation.result;
  recordFigures(context, res, job, result, timing);
  if (signal.aborted) {
    const error = context.lifecycle.abortError(signal);
    if (error) throw error;
    return null;
  }
  return { text, logprobs, result };
}

async function answerCompletion(answering: Answering): Promise<void> {
  const whole = await readWhole(answering);
  if (whole)
    answering.res.json(answering.job.format.whole(whole.text, apiFinishReason(whole.result), usageOf(whole.result), whole.logprobs));
}

/**
 * An answer that may be tool calls: whether it is, and which, is known only at its end, so it is read whole
 * first, then sent as calls (one body, or the chunks a stream of calls is made of), or as the text it is (cut
 * short by max_tokens, or no call in it).
 */
async function answerToolCalls(answering: Answering, { format, forced, names }: NonNullable<CompletionJob['toolCalls']>): Promise<void> {
  const whole = await readWhole(answering);
  if (!whole) return;
  const { res, job } = answering;
  const { text, logprobs, result } = whole;
  const finishReason = apiFinishReason(result);
  const usage = usageOf(result);
  const answer = finishReason !== 'stop' ? null : forced ? parseForcedCalls(text) : parseModelToolCalls(text, names);
  if (!job.stream) {
    res.json(answer ? format.wholeCalls(answer.content, answer.calls, usage) : job.format.whole(text, finishReason, usage, logprobs));
    return;
  }
  res.writeHead(200, SSE_HEADERS);
  const shown = job.includeUsage ? usage : null;
  res.end(
    answer
      ? format.callEvents(answer.content, answer.calls, shown)
      : job.format.opening + job.format.tokenEvent(text) + job.format.closing(finishReason, shown),
  );
}

/**
 * Writes a chunk's tokens, one SSE event each, waiting for the socket to drain when it is full. A chunk
 * holds every token made since the stream last looked; when an engine outruns the loop that can be
 * thousands, so they go out TOKENS_PER_WRITE at a time, each write taking its place in the turns shared by
 * all streams, so that other streams and /health are not held up behind one stream's or all streams' writes.
 */
async function writeTokens(
  context: ServerContext,
  res: Response,
  chunk: TokenChunk,
  format: CompletionFormat,
  signal: AbortSignal,
  generation: Generation,
): Promise<void> {
  for (let from = 0; from < chunk.tokenCount && !signal.aborted; from += TOKENS_PER_WRITE) {
    const turn = context.writeTurns.reserve();
    if (turn) await turn;
    if (signal.aborted) return;
    const events = tokenEvents(chunk, format, from, Math.min(chunk.tokenCount, from + TOKENS_PER_WRITE));
    if (events !== '' && !res.write(events)) await drained(res, signal, generation);
  }
}

/** A client that stops reading is given this long to read again before its stream is ended. */
const SLOW_CLIENT_MS = 30_000;
/** ...and at most this much text (UTF-16 code units) may pile up for it meanwhile. */
const MAX_UNREAD = 4 * 1024 * 1024;

/** The client stopped reading its stream: it is ended, and the engine stops generating for it. */
class ClientNotReading extends Error {}

/**
 * Waits for the socket to take what was written. The engine goes on generating meanwhile (the ABI has no
 * pause, and an engine's other requests must not wait for one slow reader), so what it makes piles up here:
 * past SLOW_CLIENT_MS or MAX_UNREAD the stream is given up rather than the node's memory.
 */
async function drained(res: Response, signal: AbortSignal, generation: Generation): Promise<void> {
  const startedAt = Date.now();
  const giveUp = new AbortController();
  const check = setInterval(() => {
    if (Date.now() - startedAt > SLOW_CLIENT_MS || generation.buffered > MAX_UNREAD) giveUp.abort();
  }, 100);
  try {
    await once(res, 'drain', { signal: AbortSignal.any([signal, giveUp.signal]) });
  } catch (error) {
    if (giveUp.signal.aborted && !signal.aborted) throw new ClientNotReading();
    throw error;
  } finally {
    clearInterval(check);
  }
}

/**
 * One SSE event per token of chunk[from, to). A token that completes no character (the first bytes of a
 * split character) has no text of its own and gets no event, unless its logprob was asked for.
 */
function tokenEvents(chunk: TokenChunk, format: CompletionFormat, from: number, to: number): string {
  const { text, pieceEnds, tokens } = chunk;
  let events = '';
  let start = from === 0 ? 0 : pieceEnds[from - 1]!;
  for (let i = from; i < to; i++) {
    const end = pieceEnds[i]!;
    if (tokens) events += format.tokenEventWithLogprob(text.slice(start, end), tokens[i]!);
    else if (end > start) events += format.tokenEvent(text.slice(start, end));
    start = end;
  }
  return events;
}

function apiFinishReason(result: GenerateResult): ApiFinishReason {
  return result.finishReason === 'length' ? 'length' : 'stop';
}

function usageOf(result: GenerateResult): Usage {
  return {
    prompt_tokens: result.promptTokens,
    completion_tokens: result.completionTokens,
    total_tokens: result.promptTokens + result.completionTokens,
  };
}

/** Metrics, and the generation's part of the request's log line (recorded before the response ends). */
function recordFigures(context: ServerContext, res: Response, job: CompletionJob, result: GenerateResult, timing: Timing): void {
  const endedAt = performance.now();
  const { firstTokenAt } = timing;
  const decodeSeconds = firstTokenAt === null ? 0 : (endedAt - firstTokenAt) / 1000;
  const timeToFirstTokenSeconds = firstTokenAt === null ? null : (firstTokenAt - timing.startedAt) / 1000;
  context.metrics.recordGeneration({
    model: job.modelId,
    promptTokens: result.promptTokens,
    completionTokens: result.completionTokens,
    timeToFirstTokenSeconds,
    tokensPerSecond: result.completionTokens > 1 && decodeSeconds > 0 ? (result.completionTokens - 1) / decodeSeconds : null,
  });
  res.locals.generation = {
    model: job.modelId,
    promptTokens: result.promptTokens,
    completionTokens: result.completionTokens,
    finishReason: result.finishReason,
    ttftMs: timeToFirstTokenSeconds === null ? null : Math.round(timeToFirstTokenSeconds * 1000),
  };
}

/** What the request asks of its engine beyond plain text (structured output, biased logits): a 400 before any work when the engine cannot. */
function requireCapabilities(context: ServerContext, engineId: string, { options, toolCalls }: CompletionJob): void {
  if (options.jsonSchema === undefined && options.logitBias === undefined) return; // plain text: nothing to look up
  const engine = context.registry.engines.find((record) => record.id === engineId && record.status === 'loaded');
  const needs = [
    {
      asked: options.jsonSchema !== undefined,
      capability: 'json_schema',
      param: toolCalls?.forced ? 'tool_choice' : 'response_format',
      what: 'hold its output to a JSON schema',
    },
    { asked: options.logitBias !== undefined, capability: 'logit_bias', param: 'logit_bias', what: 'bias token logits' },
  ] as const;
  for (const need of needs) {
    if (need.asked && !engine?.capabilities.includes(need.capability)) {
      throw apiError(
        'unsupported_parameter',
        `Engine '${engineId}' cannot ${need.what}: ${need.param} needs an engine with the ${need.capability} capability`,
        need.param,
      );
    }
  }
}
