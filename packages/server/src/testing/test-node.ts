import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import OpenAI from 'openai';
import { Writable } from 'node:stream';
import { pino, type Logger } from 'pino';
import { buildTestPlugin, installTestPlugin } from '@llm-node/abi-native/testing';
import type { GpuDetection, VramSample, VramSampler } from '@llm-node/gpu-detect';
import { Registry, type RegistryOptions } from '@llm-node/registry';
import { writeGgufModel } from '@llm-node/registry/testing';
import { createServer, type LlmNodeServer, type ServerOptions } from '../index.js';

// Test support, not shipped (tsconfig.build.json leaves src/testing/ out).

/** Per-token delay of the slow echo engine: long enough that a stream is still going when a test acts on it. */
export const SLOW_TOKEN_DELAY_US = 20_000;

const GIB = 1024 ** 3;
const gpu: GpuDetection = {
  backend: 'cpu',
  source: 'test',
  devices: [{ index: 0, name: 'test device', totalBytes: 16 * GIB, freeBytes: 16 * GIB, unifiedMemory: true }],
};

/** A sampler whose readings a test sets; by default an idle 16 GiB device, whatever the machine is doing. */
export function settableSampler(usedBytes = 0): VramSampler & { usedBytes: number } {
  return {
    usedBytes,
    async sample(): Promise<VramSample[]> {
      const totalBytes = 16 * GIB;
      return [{ index: 0, totalBytes, usedBytes: this.usedBytes, freeBytes: totalBytes - this.usedBytes }];
    },
  };
}

export interface TestNodeOptions
  extends Pick<ServerOptions, 'apiKey' | 'monitorIntervalMs' | 'bodyLimit' | 'allowedHosts' | 'maxConnections' | 'agentPort'> {
  sampler?: VramSampler;
  vramLimitBytes?: number;
  /** How the registry treats engine hosts that hang or keep crashing. */
  registry?: Pick<RegistryOptions, 'engineTimeouts' | 'restartPolicy' | 'allowNetwork'>;
  /** Default: silent. */
  logger?: Logger;
  /** Adds plugins and models before the registry discovers them. */
  prepare?: (dirs: { enginesDir: string; modelsDir: string }) => Promise<void>;
}

export interface TestNode {
  baseUrl: string;
  client: OpenAI;
  registry: Registry;
  server: LlmNodeServer;
  enginesDir: string;
  modelsDir: string;
  /** fetch() against the node, with a JSON body when one is given. */
  post(path: string, body: unknown, headers?: Record<string, string>): Promise<Response>;
  close(): Promise<void>;
}

/**
 * A real node on 127.0.0.1: the echo test engine (engine `echo`, architecture `echo`, GGUF and
 * safetensors, completions and embeddings) and its slow build (engine `echo_slow`, architecture `echo_slow`,
 * completions only), both compiled from C and driven through the real binding, with the models `echo` and
 * `echo-slow` (GGUF, no chat template).
 */
export async function startTestNode(options: TestNodeOptions = {}): Promise<TestNode> {
  const root = await mkdtemp(join(tmpdir(), 'llm-node-server-'));
  const enginesDir = join(root, 'engines');
  const modelsDir = join(root, 'models');
  await mkdir(modelsDir, { recursive: true });
  await installTestPlugin({
    enginesDir,
    plugin: await buildTestPlugin('echo'),
    manifest: { architectures: ['echo'], formats: ['gguf', 'safetensors'], modalities: ['completion', 'embedding'] },
  });
  await installTestPlugin({
    enginesDir,
    plugin: await buildTestPlugin('echo', { defines: { ECHO_TOKEN_DELAY_US: SLOW_TOKEN_DELAY_US, ENGINE_ID: 'echo_slow' } }),
    manifest: { architectures: ['echo_slow'] },
  });
  await writeGgufModel(join(modelsDir, 'echo.gguf'), { architecture: 'echo' });
  await writeGgufModel(join(modelsDir, 'echo-slow.gguf'), { architecture: 'echo_slow' });
  await options.prepare?.({ enginesDir, modelsDir });

  const logger = options.logger ?? pino({ level: 'silent' });
  const registry = await Registry.create({
    enginesDirs: [enginesDir],
    modelsDir,
    gpu,
    logger,
    ...options.registry,
    sampler: options.sampler ?? settableSampler(),
    ...(options.vramLimitBytes === undefined ? {} : { vramLimitBytes: options.vramLimitBytes }),
  });
  const server = createServer({
    registry,
    logger,
    ...(options.apiKey === undefined ? {} : { apiKey: options.apiKey }),
    ...(options.monitorIntervalMs === undefined ? {} : { monitorIntervalMs: options.monitorIntervalMs }),
    ...(options.bodyLimit === undefined ? {} : { bodyLimit: options.bodyLimit }),
    ...(options.allowedHosts === undefined ? {} : { allowedHosts: options.allowedHosts }),
    ...(options.maxConnections === undefined ? {} : { maxConnections: options.maxConnections }),
    ...(options.agentPort === undefined ? {} : { agentPort: options.agentPort }),
  });
  const address = await server.listen(0, '127.0.0.1');
  const baseUrl = `http://127.0.0.1:${address.port}`;
  return {
    baseUrl,
    client: new OpenAI({ baseURL: `${baseUrl}/v1`, apiKey: options.apiKey ?? 'unused', maxRetries: 0 }),
    registry,
    server,
    enginesDir,
    modelsDir,
    post: (path, body, headers = {}) =>
      fetch(`${baseUrl}${path}`, {
        method: 'POST',
        headers: { 'Content-Type': 'application/json', ...headers },
        body: typeof body === 'string' ? body : JSON.stringify(body),
      }),
    async close() {
      await server.close();
      await registry.close();
      await rm(root, { recursive: true, force: true });
    },
  };
}

/** A safetensors model folder as Hugging Face ships one, holding only what the registry reads. */
export async function writeSafetensorsModel(
  dir: string,
  config: Record<string, unknown>,
  tokenizerConfig: Record<string, unknown>,
): Promise<void> {
  await mkdir(dir, { recursive: true });
  await writeFile(join(dir, 'config.json'), JSON.stringify(config));
  await writeFile(join(dir, 'tokenizer_config.json'), JSON.stringify(tokenizerConfig));
  await writeFile(join(dir, 'model.safetensors'), Buffer.alloc(64));
}

/** A logger at `info` whose JSON lines land, parsed, in `lines`: for tests of what the node logs. */
export function capturedLogger(): { logger: Logger; lines: Record<string, unknown>[] } {
  const lines: Record<string, unknown>[] = [];
  const sink = new Writable({
    write(chunk, _encoding, done) {
      for (const line of String(chunk).split('\n').filter(Boolean)) lines.push(JSON.parse(line));
      done();
    },
  });
  return { logger: pino({ level: 'info' }, sink), lines };
}
