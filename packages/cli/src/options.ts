import { Command, InvalidArgumentError, Option, type OptionValues } from 'commander';
import { GPU_BACKENDS, parseSize } from '@llm-node/gpu-detect';
import type { GpuBackend } from '@llm-node/gpu-detect';
import { versionLine } from './version.js';

/** Everything `llm-node` is configured with, after flags, environment and defaults. */
export interface NodeOptions {
  /** Named by the operator (then it must exist); undefined = ./engines when it exists. Installed engine packages follow. */
  enginesDir: string | undefined;
  modelsDir: string;
  /** Bytes; undefined = the detected devices' total. */
  vramLimitBytes: number | undefined;
  monitorIntervalMs: number;
  port: number;
  host: string;
  /** Named by the operator; undefined = detect. `cpu` is only ever used when named. */
  gpuBackend: GpuBackend | undefined;
  /** The GPU the engines run on and admission counts, by index (nvidia-smi's numbering on CUDA). */
  gpuDevice: number;
  /** Engine ids whose plugins may use the network; all others are denied it. */
  allowNetwork: string[];
  /** Seconds an engine may make no progress on its generations, and take to load a model; undefined = the engine host's defaults. */
  engineStallTimeoutSeconds: number | undefined;
  modelLoadTimeoutSeconds: number | undefined;
  apiKey: string | undefined;
  /** Host header names served besides IP addresses and localhost; 'all' turns the check off. */
  allowedHosts: string[] | 'all';
  /** Most connections kept open; undefined = from the open-file limit. */
  maxConnections: number | undefined;
  /** On SIGTERM or SIGINT: how long requests in flight may finish before they are ended. */
  shutdownGraceSeconds: number;
  /** HAProxy's agent check on this port of `host`; undefined = none. */
  agentPort: number | undefined;
  logLevel: LogLevel;
  /** Defaults for models loaded without their own: tokens of context per request, requests at once. */
  contextLength: number | undefined;
  parallel: number | undefined;
  /** Models loaded at start, in this order, from the moment the engines are open (requests for them wait for the load). */
  load: string[];
}

export const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const;
export type LogLevel = (typeof LOG_LEVELS)[number];

/** What the command line asked for: run the node, or it was already answered (--help, --version). */
export type ParsedCommandLine = { run: true; options: NodeOptions } | { run: false };

/** A usage error (bad flag or value): the process exits 2 with this message. */
export class UsageError extends Error {}

/** The flags, each with its environment variable and its default where the CLI owns one: declared once here. */
const FLAGS: readonly Option[] = [
  new Option(
    '--engines-dir <dir>',
    'engine plugins: <dir>/<engine_id>/<gpu_backend>/ (default: ./engines when it exists), then installed engine packages',
  ).env('LLM_NODE_ENGINES_DIR'),
  new Option('--models-dir <dir>', 'models: <dir>/<model_id>.gguf or <dir>/<model_id>/').env('LLM_NODE_MODELS_DIR').default('./models'),
  new Option('--load <model_ids>', 'models to load at start, while the node begins to listen; comma-separated (others load on first use)')
    .env('LLM_NODE_LOAD')
    .argParser(idList)
    .default([]),
  new Option('--vram-limit <size>', 'most VRAM models may hold, e.g. 8G, 512M, 8589934592 (default: all of it)')
    .env('LLM_NODE_VRAM_LIMIT')
    .argParser(sizeArgument),
  new Option('--monitor-interval <ms>', 'how often the resource monitor samples VRAM')
    .env('LLM_NODE_MONITOR_INTERVAL_MS')
    .argParser(integerArgument(10, 3_600_000))
    .default(1000),
  new Option('--port <port>', 'HTTP port').env('LLM_NODE_PORT').argParser(integerArgument(0, 65_535)).default(3000),
  new Option('--host <address>', 'address to listen on').env('LLM_NODE_HOST').default('127.0.0.1'),
  new Option('--gpu-backend <backend>', 'use this backend instead of detecting one (cpu: development only)')
    .env('LLM_NODE_GPU_BACKEND')
    .choices(GPU_BACKENDS),
  new Option('--gpu-device <index>', 'the GPU to serve from, when the machine has several (run one node per GPU)')
    .env('LLM_NODE_GPU_DEVICE')
    .argParser(integerArgument(0, 255))
    .default(0),
  new Option('--allow-network <engine_ids>', 'engines whose plugins may use the network, comma-separated (all others are denied it)')
    .env('LLM_NODE_ALLOW_NETWORK')
    .argParser(idList)
    .default([]),
  new Option('--engine-stall-timeout <seconds>', 'restart an engine whose generations make no progress this long (default 120)')
    .env('LLM_NODE_ENGINE_STALL_TIMEOUT')
    .argParser(integerArgument(1, 86_400)),
  new Option('--model-load-timeout <seconds>', 'restart an engine that takes longer than this to load a model (default 600)')
    .env('LLM_NODE_MODEL_LOAD_TIMEOUT')
    .argParser(integerArgument(1, 86_400)),
  new Option('--api-key <key>', 'require "Authorization: Bearer <key>" on /v1 and /api').env('LLM_NODE_API_KEY'),
  new Option(
    '--allowed-hosts <names>',
    'Host names served besides IP addresses and localhost, comma-separated (.example.com: a domain and its subdomains; all: any)',
  )
    .env('LLM_NODE_ALLOWED_HOSTS')
    .argParser(hostList)
    .default([]),
  new Option(
    '--max-connections <n>',
    'connections kept open at most; the longest idle one makes room for a new one (default: half the open-file limit)',
  )
    .env('LLM_NODE_MAX_CONNECTIONS')
    .argParser(integerArgument(16, 1_000_000)),
  new Option(
    '--shutdown-grace <seconds>',
    'on SIGTERM or SIGINT, refuse new requests and let those in flight finish for this long before ending them',
  )
    .env('LLM_NODE_SHUTDOWN_GRACE')
    .argParser(integerArgument(0, 86_400))
    .default(30),
  new Option('--agent-port <port>', "answer HAProxy's agent check on this port: the node's weight from its load, or drain")
    .env('LLM_NODE_AGENT_PORT')
    .argParser(integerArgument(0, 65_535)),
  new Option('--log-level <level>', 'log verbosity').env('LLM_NODE_LOG_LEVEL').choices(LOG_LEVELS).default('info'),
  new Option('--context-length <tokens>', 'context per request for models loaded without one (default: min(trained, 4096))')
    .env('LLM_NODE_CONTEXT_LENGTH')
    .argParser(integerArgument(1, 10_000_000)),
  new Option('--parallel <n>', "requests generated at once per model, each with its own KV cache (default 4, as llama.cpp's server)")
    .env('LLM_NODE_PARALLEL')
    .argParser(integerArgument(1, 1024)),
];

/**
 * Reads argv (without the node and script entries) and the environment. Flags win over environment
 * variables, which win over defaults. --help and --version print and return { run: false }.
 */
export function parseCommandLine(argv: readonly string[], print: (text: string) => void): ParsedCommandLine {
  let answered = false;
  const program = new Command('llm-node')
    .description("Serve LLMs from this machine's GPU through pluggable engines (OpenAI-compatible API).")
    .version(versionLine(), '-v, --version', 'print the version and the engine ABI version')
    .helpOption('-h, --help', 'show this help')
    .allowExcessArguments(false)
    .exitOverride()
    .configureOutput({ writeOut: print, writeErr: () => {} });
  for (const flag of FLAGS) program.addOption(flag);

  try {
    program.parse([...argv], { from: 'user' });
  } catch (error) {
    const { code, message } = error as { code?: string; message: string };
    if (code === 'commander.helpDisplayed' || code === 'commander.version' || code === 'commander.help') {
      answered = true;
    } else {
      throw new UsageError(message.replace(/^error: /, ''));
    }
  }
  if (answered) return { run: false };

  return { run: true, options: toNodeOptions(program.opts()) };
}

/** Commander's values under the names NodeOptions gives them. */
function toNodeOptions(o: OptionValues): NodeOptions {
  return {
    enginesDir: o.enginesDir,
    modelsDir: o.modelsDir,
    vramLimitBytes: o.vramLimit,
    monitorIntervalMs: o.monitorInterval,
    port: o.port,
    host: o.host,
    gpuBackend: o.gpuBackend,
    gpuDevice: o.gpuDevice,
    allowNetwork: o.allowNetwork,
    engineStallTimeoutSeconds: o.engineStallTimeout,
    modelLoadTimeoutSeconds: o.modelLoadTimeout,
    apiKey: o.apiKey,
    allowedHosts: o.allowedHosts,
    maxConnections: o.maxConnections,
    shutdownGraceSeconds: o.shutdownGrace,
    agentPort: o.agentPort,
    logLevel: o.logLevel,
    contextLength: o.contextLength,
    parallel: o.parallel,
    load: o.load,
  };
}

function sizeArgument(value: string): number {
  try {
    return parseSize(value);
  } catch (error) {
    throw new InvalidArgumentError((error as Error).message);
  }
}

function hostList(value: string): string[] | 'all' {
  return value.trim() === 'all' ? 'all' : idList(value);
}

function idList(value: string): string[] {
  return value
    .split(',')
    .map((id) => id.trim())
    .filter((id) => id !== '');
}

function integerArgument(min: number, max: number) {
  return (value: string): number => {
    const n = Number(value.trim());
    if (!/^\d+$/.test(value.trim()) || n < min || n > max) {
      throw new InvalidArgumentError(`expected a whole number from ${min} to ${max}`);
    }
    return n;
  };
}
