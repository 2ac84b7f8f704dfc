import { availableParallelism } from 'node:os';
import { Piscina } from 'piscina';
import type { ModelInfo } from '@llm-node/registry';
import { apiError } from './errors.js';
import type { ChatMessage } from './schemas.js';
import type { RenderOutcome, RenderTask } from './template-worker.js';

/** ChatML: what a model that ships no chat template gets (the README says so). */
const FALLBACK_CHAT_TEMPLATE =
  "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>\\n' }}{% endfor %}" +
  "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}";

/** A render that takes longer is stopped, its worker ended: a template's loop must not run for ever. */
const RENDER_TIMEOUT_MS = 2_000;
/** The heap a worker may grow to, for the same reason. */
const RENDER_HEAP_MB = 256;

export interface ChatPromptInput {
  messages: readonly ChatMessage[];
  tools?: readonly Record<string, unknown>[] | null;
}

export interface ChatTemplates {
  render(model: ModelInfo, input: ChatPromptInput): Promise<string>;
  /** The pool's worker threads now: one from the start, all of them once the first chat is rendered. */
  readonly workers: number;
  close(): Promise<void>;
}

const NO_REQUIRE_ESM = '--no-experimental-require-module';

// The compiled worker: beside this module in dist/, or from src/ (where the tests import it) in ../dist/.
const WORKER = new URL('../dist/template-worker.js', import.meta.url);

/** What the workers beyond the first render as they start: ChatML over no messages, which every worker can. */
const WARM_UP: Omit<RenderTask, 'startedAt'> = templateTask({ chatTemplate: null, bosToken: null, eosToken: null }, { messages: [] });

/**
 * Renders chats with each model's own template in a pool of worker threads, so that a template's loop or
 * memory can never stall the node: a render over RENDER_TIMEOUT_MS or RENDER_HEAP_MB ends its worker and is
 * refused. Templates are compiled once per worker per distinct text. The variables are those of Hugging
 * Face's apply_chat_template (raise_exception and strftime_now come with the Jinja runtime). Like llama.cpp's
 * server, a BOS the template writes is dropped when the tokenizer adds one itself, so that the prompt,
 * tokenized with special tokens added, starts with exactly one.
 *
 * The pool starts with one worker, so that the node's start boots no more than the first chat needs. The
 * first chat also starts the others, each with a render of its own, and they stay: a worker takes about
 * 100 ms to boot, and the first burst of chats would otherwise wait on those boots on cores that the
 * engine's compute needs (docs/performance.md, "Warm-up"). A worker ended for a runaway template is
 * replaced when renders next overlap.
 */
export function createChatTemplates(): ChatTemplates {
  const pool = new Piscina<RenderTask, RenderOutcome>({
    filename: WORKER.href,
    minThreads: 1,
    maxThreads: Math.max(1, Math.min(4, availableParallelism())),
    idleTimeout: Number.POSITIVE_INFINITY,
    resourceLimits: { maxOldGenerationSizeMb: RENDER_HEAP_MB },
    // Piscina loads the worker module with require() first, and Node 20's require() of an ES module aborted a
    // whole test process once (`v8::ToLocalChecked Empty MaybeLocal` in loadESMFromCJS) when a worker was ended
    // while loading: without it, Piscina falls back to import(), the path ES modules are made for. Only where
    // this Node has the flag, which a later one may drop.
    execArgv: process.allowedNodeEnvironmentFlags.has(NO_REQUIRE_ESM) ? [NO_REQUIRE_ESM] : [],
  });
  let grown = false;

  return {
    async render(model, input) {
      const rendering = renderInPool(pool, templateTask(model, input));
      if (!grown) {
        grown = true;
        // Queued while the first worker renders, each of these makes the pool start another worker.
        for (let i = 1; i < pool.maxThreads; i++) renderInPool(pool, WARM_UP).catch(() => {});
      }
      const outcome = await rendering;
      if ('failed' in outcome) {
        throw outcome.failed === 'compile'
          ? apiError('chat_template_error', `The model's chat template does not compile: ${outcome.message}`)
          : apiError('invalid_request_error', `The model's chat template refused these messages: ${outcome.message}`);
      }
      const prompt = outcome.text;
      if (model.addBosToken === true && model.bosToken && prompt.startsWith(model.bosToken)) return prompt.slice(model.bosToken.length);
      return prompt;
    },
    get workers() {
      return pool.threads.length;
    },
    close: () => pool.destroy(),
  };
}

/** One render in the pool, stopped RENDER_TIMEOUT_MS after a worker begins it. */
async function renderInPool(pool: Piscina<RenderTask, RenderOutcome>, task: Omit<RenderTask, 'startedAt'>): Promise<RenderOutcome> {
  // The time limit runs from when a worker begins the render, which it writes here: renders queued behind a
  // runaway template are not charged for its time. Read when the timer fires, and waited for again if later.
  const startedAt = new BigInt64Array(new SharedArrayBuffer(BigInt64Array.BYTES_PER_ELEMENT));
  const abort = new AbortController();
  let timer: NodeJS.Timeout;
  const check = () => {
    const began = Atomics.load(startedAt, 0);
    const leftMs = began === 0n ? RENDER_TIMEOUT_MS : RENDER_TIMEOUT_MS - Number(process.hrtime.bigint() - began) / 1e6;
    if (leftMs <= 0) abort.abort();
    else timer = setTimeout(check, leftMs);
  };
  timer = setTimeout(check, RENDER_TIMEOUT_MS);
  try {
    return await pool.run({ ...task, startedAt }, { signal: abort.signal });
  } catch (error) {
    const reason = abort.signal.aborted ? `took longer than ${RENDER_TIMEOUT_MS / 1000} s` : `failed: ${(error as Error).message}`;
    throw apiError('chat_template_error', `Rendering the model's chat template ${reason}`);
  } finally {
    clearTimeout(timer);
  }
}

/** The template a chat renders with (ChatML for a model without one) and the variables it is given. */
export function templateTask(
  model: Pick<ModelInfo, 'chatTemplate' | 'bosToken' | 'eosToken'>,
  { messages, tools }: ChatPromptInput,
): Omit<RenderTask, 'startedAt'> {
  return {
    source: model.chatTemplate ?? FALLBACK_CHAT_TEMPLATE,
    variables: {
      messages: messages.map(templateMessage),
      add_generation_prompt: true,
      bos_token: model.bosToken ?? '',
      eos_token: model.eosToken ?? '',
      // Templates test `tools is not none`: an empty list means no tools, as if none were given.
      ...(tools && tools.length > 0 ? { tools } : {}),
    },
  };
}

/**
 * Text parts joined with newlines, as llama.cpp does for templates that expect plain string content. A message
 * without content keeps none: templates test `'content' in message`. A tool call's arguments, JSON text in
 * OpenAI's API, reach the template as the object Hugging Face's templates take (`arguments | tojson`, or its
 * items), as llama.cpp gives them; text that is not a JSON object stays text.
 */
function templateMessage(message: ChatMessage): Record<string, unknown> {
  const { content } = message;
  const withText = Array.isArray(content) ? { ...message, content: content.map((part) => part.text).join('\n') } : message;
  return 'tool_calls' in message && message.tool_calls
    ? { ...withText, tool_calls: message.tool_calls.map(withObjectArguments) }
    : withText;
}

function withObjectArguments(call: Record<string, unknown>): Record<string, unknown> {
  const fn = call.function as { arguments?: unknown } | undefined;
  if (typeof fn?.arguments !== 'string') return call;
  let parsed: unknown;
  try {
    parsed = JSON.parse(fn.arguments);
  } catch {
    return call;
  }
  const isObject = typeof parsed === 'object' && parsed !== null && !Array.isArray(parsed);
  return isObject ? { ...call, function: { ...fn, arguments: parsed } } : call;
}
