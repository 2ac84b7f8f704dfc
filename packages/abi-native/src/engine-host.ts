import { fork, type ChildProcess } from 'node:child_process';
import { resolve } from 'node:path';
import { binding } from './binding.js';
import { EngineError, toEngineError } from './errors.js';
import { TOKEN_PIPE_FD } from './host-protocol.js';
import type { HostCall, HostMessage, HostOpened, WireError } from './host-protocol.js';
import { TokenFrameReader } from './token-frames.js';
import { TokenStream, type GenerationOutcome } from './token-stream.js';
import type {
  EmbedRequest,
  EmbedResult,
  Engine,
  EngineCapability,
  EngineExit,
  EngineInfo,
  EngineInitConfig,
  GenerateRequest,
  Generation,
  LoadedModelInfo,
  LoadProgress,
  LoadProgressListener,
  ModelLoadParams,
  ModelStats,
} from './types.js';

/** How long an engine host may take before it is killed as hung. Milliseconds. */
export interface EngineHostTimeouts {
  /** Opening the plugin and engine_init. Default 60 s. */
  initMs?: number;
  /** A model load. Default 10 minutes: a large model from a slow disk. */
  loadMs?: number;
  /** Every other call (unload, estimate, VRAM, shutdown). Default 30 s. */
  callMs?: number;
  /** Generations in flight, and no token or poll from any of them; an engine_embed call. Default 120 s. */
  stallMs?: number;
  /** A cancelled generation that has not returned. Default 5 s. */
  cancelMs?: number;
}

const DEFAULT_TIMEOUTS: Required<EngineHostTimeouts> = {
  initMs: 60_000,
  loadMs: 600_000,
  callMs: 30_000,
  stallMs: 120_000,
  cancelMs: 5_000,
};

export interface EngineHostOptions {
  /** The manifest's id: the plugin must report it. */
  expectedId?: string;
  /** Let the plugin use the network (by default the host denies it before opening the plugin). */
  allowNetwork?: boolean;
  timeouts?: EngineHostTimeouts;
  /** A line the plugin (or the host) wrote on stdout or stderr. */
  onOutput?: (line: string, stream: 'stdout' | 'stderr') => void;
  /** The plugin tried to open a network socket and was refused; `family` is the address family number. */
  onNetworkDenied?: (family: number) => void;
}

/** Lines of the host's stderr kept for the message of a crash. */
const LAST_WORDS = 8;
/** A longer line is cut: a plugin writing without newlines must not grow the node's memory. */
const MAX_LINE = 4096;

// The compiled host, from dist/ (where this module is built to) or from src/ (where tests import it).
const HOST_MAIN = new URL('../dist/host-main.js', import.meta.url);
const DENIED_SOCKET_MARKER: string = binding.constants.DENIED_SOCKET_MARKER;

// How much of a host's token pipe one event-loop turn reads (about 5,000 tokens of short text) before it lets
// the rest of the node's I/O in. libuv reads a stream that keeps having data up to 32 times in a turn, and each
// read's tokens go out to their streams in that turn: an engine that outruns the node (bench/server's 64-stream
// flood of the echo engine) held the loop for up to 50 ms, and /health with it (p99 22 ms, max 49 ms, medians of
// six runs; 15 and 28 ms with this bound, at the same tokens per second).
const TOKEN_BYTES_PER_TURN = 64 * 1024;

/** How long a host process started by prestart() waits to be used. */
const SPARE_HOST_MS = 10_000;

let spare: { child: ChildProcess; discard: NodeJS.Timeout } | undefined;

// glibc's malloc, asked to, backs its heap with transparent huge pages (glibc 2.35 and later; older ones, other C
// libraries and other systems ignore these tunables), but only its main arena's: with one arena, every thread
// allocates from that one. A model load allocates much in small pieces (llama.cpp's tokenizer: 128k strings, 280k
// merges), on a thread of the host's, and with 4 KiB pages every new page is a fault, dear on a virtual machine:
// the llama_cpp plugin loading bench/cpu's 128k-vocabulary model on a thread took 23,000 page faults and 880 ms
// (median of six) with 4 KiB pages, 3,700 and 574 ms with these; the same peak memory (112 MiB), and as fast a
// decode at 4 streams. An operator's own value for either key wins.
const HOST_MALLOC_TUNABLES = ['glibc.malloc.hugetlb=1', 'glibc.malloc.arena_max=1'];

/** The environment of a host process: the node's, with the malloc tunables added. */
export function hostEnvironment(env: NodeJS.ProcessEnv): NodeJS.ProcessEnv {
  const operators = env.GLIBC_TUNABLES ? env.GLIBC_TUNABLES.split(':') : [];
  const keyOf = (tunable: string) => tunable.split('=')[0];
  const added = HOST_MALLOC_TUNABLES.filter((tunable) => !operators.some((own) => keyOf(own) === keyOf(tunable)));
  return added.length === 0 ? env : { ...env, GLIBC_TUNABLES: [...operators, ...added].join(':') };
}

function forkHost(): ChildProcess {
  return fork(HOST_MAIN, [], {
    env: hostEnvironment(process.env),
    execArgv: [],
    serialization: 'advanced',
    stdio: ['ignore', 'pipe', 'pipe', 'ipc', 'pipe'], // fd 4: the token pipe
  });
}

/** The process prestart() started, unless there is none or it has ended. */
function takeSpareHost(): ChildProcess | undefined {
  if (spare === undefined) return undefined;
  const { child, discard } = spare;
  spare = undefined;
  clearTimeout(discard);
  if (child.exitCode !== null || child.signalCode !== null || !child.connected) {
    child.kill();
    return undefined;
  }
  holdsCaller(child, true);
  return child;
}

/** Whether the host process, its channel and its pipes keep the caller's event loop running. */
function holdsCaller(child: ChildProcess, hold: boolean): void {
  for (const handle of [child, child.channel, ...child.stdio]) {
    const refable = handle as { ref?(): void; unref?(): void } | null | undefined;
    if (hold) refable?.ref?.();
    else refable?.unref?.();
  }
}

interface PendingCall {
  resolve(value: unknown): void;
  reject(error: unknown): void;
  timer: NodeJS.Timeout;
  onProgress?: LoadProgressListener | undefined;
}

interface RunningGeneration {
  stream: TokenStream;
  cancelTimer?: NodeJS.Timeout;
}

/**
 * An engine plugin in a process of its own. Every call crosses to the host (host-main.ts) and back over Node's
 * IPC channel; tokens come on a pipe of their own, written by the plugin's threads and read here in batches
 * (token-frames.ts), so that no JavaScript runs in the host per token. When the host dies (a crash in the plugin,
 * abort, exit) or is killed because a call, a generation or a cancel overran its time, every call and
 * generation in flight fails with `engine_crashed` or `engine_timeout`, and `exited` says why; the engine is
 * then unusable, and its owner starts another.
 */
export class EngineHost implements Engine {
  readonly path: string;
  readonly info: EngineInfo;
  readonly capabilities: readonly EngineCapability[];
  /** Whether the plugin is denied the network, and how (or why it is not). */
  readonly network: { enforced: boolean; how: string };
  readonly exited: Promise<EngineExit>;

  readonly #child: ChildProcess;
  readonly #timeouts: Required<EngineHostTimeouts>;
  readonly #calls = new Map<number, PendingCall>();
  readonly #generations = new Map<number, RunningGeneration>();
  readonly #lastWords: string[];
  readonly #tokens: TokenFrameReader;
  #nextId = 1;
  #exit: EngineExit | undefined;
  /** Why the node killed the host, when it did. */
  #killedFor: { code: 'engine_timeout'; message: string } | undefined;
  #closing = false;
  #lastProgress = -1;
  #lastProgressAt = 0;
  #watchdog: NodeJS.Timeout | undefined;

  private constructor(
    path: string,
    child: ChildProcess,
    opened: HostOpened,
    exited: Promise<EngineExit>,
    timeouts: Required<EngineHostTimeouts>,
    lastWords: string[],
  ) {
    this.path = path;
    this.#child = child;
    this.info = opened.info;
    this.capabilities = Object.freeze(opened.capabilities);
    this.network = opened.network;
    this.exited = exited;
    this.#timeouts = timeouts;
    this.#lastWords = lastWords;
    this.#tokens = new TokenFrameReader({
      chunk: (generation, chunk) => this.#generations.get(generation)?.stream.push(chunk),
      end: (generation, outcome) => this.#ended(generation, outcome),
    });
    const pipe = child.stdio[TOKEN_PIPE_FD] as NodeJS.ReadableStream;
    let readSinceYield = 0;
    pipe.on('data', (data: Buffer) => {
      this.#lastProgressAt = Date.now();
      this.#tokens.push(data);
      readSinceYield += data.length;
      if (readSinceYield < TOKEN_BYTES_PER_TURN) return;
      pipe.pause();
      setImmediate(() => {
        readSinceYield = 0;
        pipe.resume();
      });
    });
  }

  /**
   * Starts a host process now for the next start() to open its plugin in. A host process takes about 0.1 s to
   * start (Node, then this package's binding): a program that will open a plugin soon, as the node does, calls
   * this first and has that time overlap its own start. Until a start() takes it, the process holds neither the
   * caller's event loop nor its exit, and it ends unused after SPARE_HOST_MS.
   */
  static prestart(): void {
    if (spare !== undefined) return;
    const child = forkHost();
    holdsCaller(child, false);
    const discard = setTimeout(() => {
      spare = undefined;
      child.kill();
    }, SPARE_HOST_MS).unref();
    spare = { child, discard };
  }

  /**
   * Starts a host process, denies it the network (unless allowed) and opens the plugin at `libraryPath` in it,
   * checking what engine_get_info() says as openEngine() does. Throws EngineError: what opening throws, or
   * engine_crashed / engine_timeout when the host died or hung while opening.
   */
  static async start(libraryPath: string, options: EngineHostOptions = {}): Promise<EngineHost> {
    const path = resolve(libraryPath);
    const timeouts = { ...DEFAULT_TIMEOUTS, ...options.timeouts };
    const child = takeSpareHost() ?? forkHost();
    const lastWords: string[] = [];
    readLines(child.stdout!, (line) => options.onOutput?.(line, 'stdout'));
    readLines(child.stderr!, (line) => {
      if (line.startsWith(DENIED_SOCKET_MARKER)) {
        options.onNetworkDenied?.(Number(line.slice(DENIED_SOCKET_MARKER.length)));
        return;
      }
      lastWords.push(line);
      if (lastWords.length > LAST_WORDS) lastWords.shift();
      options.onOutput?.(line, 'stderr');
    });

    let host: EngineHost | undefined;
    const exited = new Promise<EngineExit>((settle) => {
      child.once('exit', (code, signal) => {
        const exit = host === undefined ? describeExit(code, signal, lastWords, undefined, false) : host.#describeExit(code, signal);
        if (host !== undefined) host.#fail(exit);
        settle(exit);
      });
    });
    const opening = new Promise<HostOpened>((resolveOpen, rejectOpen) => {
      const onMessage = (message: HostMessage) => {
        if (!('reply' in message)) return;
        child.off('message', onMessage);
        if (message.error) rejectOpen(fromWire(message.error));
        else resolveOpen(message.value as HostOpened);
      };
      child.on('message', onMessage);
      child.once('error', rejectOpen);
      const call: HostCall = { call: 'open', id: 0, path, expectedId: options.expectedId, allowNetwork: options.allowNetwork === true };
      child.send(call);
    });
    let timer: NodeJS.Timeout | undefined;
    const overran = new Promise<never>((_, reject) => {
      timer = setTimeout(() => {
        child.kill('SIGKILL');
        reject(new EngineError('engine_timeout', `the engine host did not open ${path} within ${timeouts.initMs / 1000} s; killed`));
      }, timeouts.initMs);
    });
    const died = exited.then((exit) => Promise.reject(new EngineError(exit.code, exit.message)));
    try {
      const opened = await Promise.race([opening, overran, died]);
      host = new EngineHost(path, child, opened, exited, timeouts, lastWords);
      child.on('message', (message: HostMessage) => host!.#onMessage(message));
      return host;
    } catch (error) {
      child.kill('SIGKILL');
      throw toEngineError(error);
    } finally {
      clearTimeout(timer);
    }
  }

  /** The host's process id. */
  get pid(): number | undefined {
    return this.#child.pid;
  }

  init(config: EngineInitConfig): Promise<void> {
    return this.#call({ call: 'init', id: 0, config }, this.#timeouts.initMs, 'engine_init') as Promise<void>;
  }

  loadModel(modelId: string, params: ModelLoadParams, onProgress?: LoadProgressListener): Promise<LoadedModelInfo> {
    return this.#call(
      { call: 'loadModel', id: 0, modelId, params },
      this.#timeouts.loadMs,
      'loading a model',
      onProgress,
    ) as Promise<LoadedModelInfo>;
  }

  unloadModel(modelId: string): Promise<void> {
    return this.#call({ call: 'unloadModel', id: 0, modelId }, this.#timeouts.callMs, 'unloading a model') as Promise<void>;
  }

  estimateVram(params: ModelLoadParams): Promise<number | null> {
    return this.#call({ call: 'estimateVram', id: 0, params }, this.#timeouts.callMs, 'engine_model_estimate_vram') as Promise<
      number | null
    >;
  }

  vramUsed(): Promise<number | null> {
    return this.#call({ call: 'vramUsed', id: 0 }, this.#timeouts.callMs, 'engine_get_vram_used') as Promise<number | null>;
  }

  modelStats(modelId: string): Promise<ModelStats | null> {
    return this.#call(
      { call: 'modelStats', id: 0, modelId },
      this.#timeouts.callMs,
      'engine_model_get_stats',
    ) as Promise<ModelStats | null>;
  }

  /** Held to `stallMs`, as a generation is: an embedding is work on the model, not a quick call. */
  embed(request: EmbedRequest): Promise<EmbedResult> {
    return this.#call({ call: 'embed', id: 0, request }, this.#timeouts.stallMs, 'engine_embed') as Promise<EmbedResult>;
  }

  generate(request: GenerateRequest, options: { signal?: AbortSignal } = {}): Generation {
    if (this.#exit) return TokenStream.failed(this.#exitError());
    if (options.signal?.aborted) return TokenStream.cancelled(request?.modelId);
    const id = this.#nextId++;
    const running: RunningGeneration = {
      stream: new TokenStream(request?.modelId, () => {
        this.#send({ call: 'cancel', generation: id });
        running.cancelTimer = setTimeout(
          () => this.#kill(`a cancelled generation did not return within ${this.#timeouts.cancelMs / 1000} s`),
          this.#timeouts.cancelMs,
        );
      }),
    };
    if (this.#generations.size === 0) this.#lastProgressAt = Date.now(); // idle time is no stall
    this.#generations.set(id, running);
    this.#tokens.expect(id, request?.logprobs === true);
    this.#startWatchdog();
    const signal = options.signal;
    const onAbort = () => running.stream.cancel();
    signal?.addEventListener('abort', onAbort, { once: true });
    void running.stream.ended.then(() => signal?.removeEventListener('abort', onAbort));
    this.#send({ call: 'generate', generation: id, request });
    return running.stream;
  }

  shutdown(): Promise<void> {
    return this.#call({ call: 'shutdown', id: 0 }, this.#timeouts.callMs, 'engine_shutdown') as Promise<void>;
  }

  /** Shuts the plugin down and ends the host; kills it if that overruns. Resolves once the host is gone. */
  async close(): Promise<void> {
    if (!this.#exit && !this.#closing) {
      this.#closing = true;
      await this.#call({ call: 'close', id: 0 }, this.#timeouts.callMs, 'closing the engine').catch(() => undefined);
    }
    await this.exited;
  }

  /** Ends the host at once, failing what is in flight with `engine_timeout` and `reason`. */
  kill(reason: string): void {
    this.#kill(reason);
  }

  #call(message: HostCall, timeoutMs: number, what: string, onProgress?: LoadProgressListener): Promise<unknown> {
    if (this.#exit) return Promise.reject(this.#exitError());
    const id = this.#nextId++;
    return new Promise((resolveCall, rejectCall) => {
      const timer = setTimeout(() => this.#kill(`${what} did not return within ${timeoutMs / 1000} s`), timeoutMs);
      this.#calls.set(id, { resolve: resolveCall, reject: rejectCall, timer, onProgress });
      this.#send({ ...message, id });
    });
  }

  #send(message: unknown): void {
    if (this.#exit || !this.#child.connected) return;
    this.#child.send(message as HostCall, (error) => {
      if (error) this.#kill(`the engine host's channel failed: ${error.message}`);
    });
  }

  #onMessage(message: HostMessage): void {
    if ('reply' in message) {
      const call = this.#calls.get(message.reply);
      if (!call) return;
      this.#calls.delete(message.reply);
      clearTimeout(call.timer);
      if (message.error) call.reject(fromWire(message.error));
      else call.resolve(message.value);
    } else if ('loading' in message) {
      this.#calls.get(message.loading)?.onProgress?.(checkedProgress(message.progress));
    } else if ('end' in message) {
      this.#ended(message.generation, 'error' in message.end ? { error: fromWire(message.end.error) } : message.end);
    } else if (message.progress !== this.#lastProgress) {
      this.#lastProgress = message.progress;
      this.#lastProgressAt = Date.now();
    }
  }

  #ended(generation: number, outcome: GenerationOutcome): void {
    const running = this.#generations.get(generation);
    if (!running) return;
    this.#generations.delete(generation);
    clearTimeout(running.cancelTimer);
    running.stream.end(outcome);
  }

  /** While generations run: a host whose plugins make no progress at all for stallMs is killed. */
  #startWatchdog(): void {
    if (this.#watchdog) return;
    const every = Math.max(50, Math.min(1000, this.#timeouts.stallMs / 4));
    this.#watchdog = setInterval(() => {
      if (this.#generations.size === 0) {
        clearInterval(this.#watchdog);
        this.#watchdog = undefined;
        return;
      }
      if (Date.now() - this.#lastProgressAt > this.#timeouts.stallMs) {
        this.#kill(`its generations made no progress (no token, no poll of the token callback) for ${this.#timeouts.stallMs / 1000} s`);
      }
    }, every);
    this.#watchdog.unref();
  }

  #kill(reason: string): void {
    if (this.#exit || this.#killedFor) return;
    this.#killedFor = { code: 'engine_timeout', message: reason };
    this.#child.kill('SIGKILL');
  }

  #describeExit(code: number | null, signal: NodeJS.Signals | null): EngineExit {
    return describeExit(code, signal, this.#lastWords, this.#killedFor, this.#closing);
  }

  /** The host is gone: everything in flight fails with why. */
  #fail(exit: EngineExit): void {
    this.#exit = exit;
    clearInterval(this.#watchdog);
    const error = this.#exitError();
    for (const call of this.#calls.values()) {
      clearTimeout(call.timer);
      call.reject(error);
    }
    this.#calls.clear();
    for (const running of this.#generations.values()) {
      clearTimeout(running.cancelTimer);
      running.stream.end({ error });
    }
    this.#generations.clear();
  }

  #exitError(): EngineError {
    const exit = this.#exit!;
    return exit.code === 'closed'
      ? new EngineError('closed', `engine '${this.info.id}' is closed`)
      : new EngineError(exit.code, exit.message);
  }
}

function describeExit(
  code: number | null,
  signal: NodeJS.Signals | null,
  lastWords: readonly string[],
  killedFor: { code: 'engine_timeout'; message: string } | undefined,
  closing: boolean,
): EngineExit {
  const status = signal !== null ? `killed by ${signal}` : `exited with status ${code}`;
  if (killedFor) return { code: killedFor.code, message: `the engine host was killed: ${killedFor.message}`, exitCode: code, signal };
  if (closing && code === 0) return { code: 'closed', message: 'the engine host was closed', exitCode: code, signal };
  const said = lastWords.length > 0 ? `; its last words: ${lastWords.join(' | ')}` : '';
  return { code: 'engine_crashed', message: `the engine host ${status}${said}`, exitCode: code, signal };
}

function fromWire(error: WireError): EngineError {
  return new EngineError(error.code, error.message, error.engineCode === undefined ? {} : { engineCode: error.engineCode });
}

/** Calls `onLine` for each line of `stream`, cutting lines longer than MAX_LINE. */
function readLines(stream: NodeJS.ReadableStream, onLine: (line: string) => void): void {
  let partial = '';
  stream.setEncoding('utf8');
  stream.on('data', (data: string) => {
    const lines = (partial + data).split('\n');
    partial = lines.pop()!;
    if (partial.length > MAX_LINE) {
      lines.push(partial.slice(0, MAX_LINE));
      partial = '';
    }
    for (const line of lines) onLine(line.length > MAX_LINE ? line.slice(0, MAX_LINE) : line);
  });
  stream.on('end', () => {
    if (partial !== '') onLine(partial);
  });
}

/** The host runs the plugin's code: what it says of a load's progress is read as untrusted. */
function checkedProgress(progress: LoadProgress): LoadProgress {
  const fraction = Number(progress?.fraction);
  return {
    phase: String(progress?.phase ?? '').slice(0, 64),
    fraction: fraction >= 0 ? Math.min(fraction, 1) : 0,
  };
}
