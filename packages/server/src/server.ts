import { createServer as createHttpServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { performance } from 'node:perf_hooks';
import express, { type Express, type RequestHandler } from 'express';
import type { Logger } from 'pino';
import type { Registry } from '@llm-node/registry';
import { startAgentCheck, type AgentCheck } from './agent-check.js';
import { requireApiKey } from './auth.js';
import { createChatTemplates } from './chat-template.js';
import type { ServerContext } from './context.js';
import { defaultMaxConnections, guardConnections } from './connection-guard.js';
import { errorHandler, notFound } from './errors.js';
import { healthRoutes, notReady, trafficWeight } from './health.js';
import { checkHost } from './host-check.js';
import { Lifecycle } from './lifecycle.js';
import { Metrics } from './metrics.js';
import { startResourceMonitor } from './monitor.js';
import { nodeRoutes } from './node-routes.js';
import { openAiRoutes } from './openai-routes.js';
import { WriteTurns } from './write-turns.js';

export interface ServerOptions {
  registry: Registry;
  logger: Logger;
  /** When set, /v1/*, /api/*, /apply-template and /metrics need `Authorization: Bearer <apiKey>`; /health stays open. */
  apiKey?: string;
  /** How often the resource monitor samples VRAM; default 1000. */
  monitorIntervalMs?: number;
  /** Largest request body accepted, in bytes or as body-parser reads it ('4mb'); default '4mb'. */
  bodyLimit?: number | string;
  /** Host header names served besides IP addresses and localhost (DNS rebinding protection); 'all' turns the check off. */
  allowedHosts?: readonly string[] | 'all';
  /** Most connections kept open; default from the open-file limit (defaultMaxConnections). */
  maxConnections?: number;
  /** A port for HAProxy's agent check, on the host `listen` is given (0: any free port); none when unset. */
  agentPort?: number;
}

export interface CloseOptions {
  /**
   * How long requests in flight may go on to their end before they are ended with `shutting_down`; new requests
   * are refused meanwhile, and `/health` and the agent check say the node is draining. Default 0.
   */
  graceMs?: number;
}

export interface LlmNodeServer {
  /** The Express app, for embedding; `listen` serves it and starts the resource monitor. */
  readonly app: Express;
  listen(port: number, host?: string): Promise<AddressInfo>;
  /** Where the agent check listens, once `listen` has started it; null without `agentPort`. */
  readonly agentAddress: AddressInfo | null;
  /**
   * Drains, then stops: refuses new requests with 503 (`Connection: close`), lets the requests in flight finish
   * within `graceMs`, ends the streams still open with a `shutting_down` error event, waits for them, stops
   * listening and stops the monitor. Idempotent: a second call with no grace ends the drain at once. The
   * registry stays open: its owner closes it afterwards.
   */
  close(options?: CloseOptions): Promise<void>;
}

// Socket writes of token events, all streams together, in one event-loop turn: few enough that a turn stays
// around a millisecond on a small machine (bench/server: /health p99 under 64 streams).
const WRITES_PER_TURN = 8;

export function createServer(options: ServerOptions): LlmNodeServer {
  return new NodeServer(options);
}

class NodeServer implements LlmNodeServer {
  readonly app: Express;
  readonly #options: ServerOptions;
  readonly #context: ServerContext;
  #httpServer: Server | null = null;
  #agentCheck: AgentCheck | null = null;
  #stopMonitor = () => {};
  #closing: Promise<void> | null = null;
  #hurry = () => {}; // ends the drain's grace at once

  constructor(options: ServerOptions) {
    const { registry, logger } = options;
    this.#options = options;
    this.#context = {
      registry,
      logger,
      lifecycle: new Lifecycle(),
      metrics: new Metrics(registry),
      chatTemplates: createChatTemplates(),
      writeTurns: new WriteTurns(WRITES_PER_TURN),
    };
    this.app = createApp(this.#context, options);
  }

  get agentAddress(): AddressInfo | null {
    return this.#agentCheck?.address ?? null;
  }

  async listen(port: number, host = '127.0.0.1'): Promise<AddressInfo> {
    // The parser looks for connections over their headers' time limit every second, not every 30 s.
    const server = createHttpServer({ noDelay: true, connectionsCheckingInterval: 1000 }, this.app);
    guardConnections(server, this.#options.maxConnections ?? defaultMaxConnections());
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(port, host, () => {
        server.off('error', reject);
        resolve();
      });
    });
    this.#httpServer = server;
    if (this.#options.agentPort !== undefined) {
      try {
        this.#agentCheck = await startAgentCheck(this.#options.agentPort, host, () => this.#agentReply());
      } catch (error) {
        await new Promise((resolve) => server.close(resolve));
        throw error;
      }
    }
    const { registry, monitorIntervalMs = 1000, logger } = this.#options;
    this.#stopMonitor = startResourceMonitor(registry, monitorIntervalMs, logger);
    return server.address() as AddressInfo;
  }

  close({ graceMs = 0 }: CloseOptions = {}): Promise<void> {
    if (this.#closing) {
      if (graceMs === 0) this.#hurry();
      return this.#closing;
    }
    this.#closing = this.#drainAndStop(graceMs);
    return this.#closing;
  }

  async #agentReply(): Promise<string> {
    const reason = notReady(this.#context);
    if (reason === 'draining') return 'drain';
    if (reason === 'no_engine') return 'down';
    return `ready up ${trafficWeight(await this.#options.registry.modelActivity())}%`;
  }

  async #drainAndStop(graceMs: number): Promise<void> {
    const { lifecycle, chatTemplates } = this.#context;
    lifecycle.drain();
    // Keep-alive connections with nothing in flight are not needed to finish anything.
    this.#httpServer?.closeIdleConnections();
    await new Promise<void>((resolve) => {
      const timer = setTimeout(resolve, graceMs);
      this.#hurry = () => {
        clearTimeout(timer);
        resolve();
      };
      void lifecycle.idle().then(this.#hurry);
    });
    this.#stopMonitor();
    const server = this.#httpServer;
    const closed = server
      ? new Promise<void>((resolve, reject) => server.close((error) => (error ? reject(error) : resolve())))
      : Promise.resolve();
    await lifecycle.shutdown();
    // Nothing is in flight any more: what is left are idle keep-alive connections.
    server?.closeAllConnections();
    await closed;
    await this.#agentCheck?.close();
    await chatTemplates.close();
  }
}

function createApp(context: ServerContext, options: ServerOptions): Express {
  const app = express();
  app.disable('x-powered-by');
  app.disable('etag');
  app.use(observeRequests(context));
  app.use(checkHost(options.allowedHosts ?? []));
  // Liveness and readiness: before the key and the body parser, and answered while draining too.
  app.use(healthRoutes(context));
  if (options.apiKey !== undefined) app.use(['/v1', '/api', '/apply-template', '/metrics'], requireApiKey(options.apiKey));
  app.get('/metrics', async (_req, res) => {
    res.type(context.metrics.contentType).send(await context.metrics.exposition());
  });
  app.use(context.lifecycle.track);
  app.use(express.json({ limit: options.bodyLimit ?? '4mb' }));
  app.use(nodeRoutes(context));
  app.use(openAiRoutes(context));
  app.use(notFound);
  app.use(errorHandler(context.logger));
  return app;
}

const CLIENT_CLOSED = 499;

/** One log line and one metrics count per request, when its response has closed and its generation ended. */
function observeRequests({ logger, metrics }: ServerContext): RequestHandler {
  return (req, res, next) => {
    const startedAt = performance.now();
    res.once(
      'close',
      () =>
        void Promise.resolve(res.locals.served).then(() => {
          const route = req.route ? `${req.baseUrl}${String(req.route.path)}` : 'unmatched';
          // A response its client did not wait for counts as 499 (nginx's "client closed request"), whatever
          // status had been sent when it left.
          const status = res.writableFinished ? res.statusCode : CLIENT_CLOSED;
          metrics.countRequest(req.method, route, status);
          const summary = {
            method: req.method,
            url: req.originalUrl,
            status,
            ms: Math.round(performance.now() - startedAt),
            ...(res.writableFinished ? {} : { clientClosed: true }),
            ...res.locals.generation,
          };
          // Probes come every few seconds: kept out of the default log level.
          if (route.startsWith('/health') || route === '/metrics') logger.debug(summary, 'request');
          else logger.info(summary, 'request');
        }),
    );
    next();
  };
}
