import { createServer as createHttpServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { performance } from 'node:perf_hooks';
import express, { type Express, type RequestHandler } from 'express';
import type { Logger } from 'pino';
import type { Registry } from '@llm-node/registry';
import { requireApiKey } from './auth.js';
import { createChatTemplates } from './chat-template.js';
import type { ServerContext } from './context.js';
import { defaultMaxConnections, guardConnections } from './connection-guard.js';
import { errorHandler, notFound } from './errors.js';
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
}

export interface LlmNodeServer {
  /** The Express app, for embedding; `listen` serves it and starts the resource monitor. */
  readonly app: Express;
  listen(port: number, host?: string): Promise<AddressInfo>;
  /**
   * Stops accepting connections, ends open streams with a `shutting_down` error event, refuses requests
   * still arriving with 503, waits for the requests in flight, and stops the monitor. Idempotent. The
   * registry stays open: its owner closes it afterwards.
   */
  close(): Promise<void>;
}

// Socket writes of token events, all streams together, in one event-loop turn: few enough that a turn stays
// around a millisecond on a small machine (bench/server: /health p99 under 64 streams).
const WRITES_PER_TURN = 8;

export function createServer(options: ServerOptions): LlmNodeServer {
  const { registry, logger } = options;
  const context: ServerContext = {
    registry,
    logger,
    lifecycle: new Lifecycle(),
    metrics: new Metrics(registry),
    chatTemplates: createChatTemplates(),
    writeTurns: new WriteTurns(WRITES_PER_TURN),
  };
  const app = createApp(context, options);
  let httpServer: Server | null = null;
  let stopMonitor = () => {};
  let closing: Promise<void> | null = null;

  return {
    app,
    async listen(port, host = '127.0.0.1') {
      // The parser looks for connections over their headers' time limit every second, not every 30 s.
      const server = createHttpServer({ noDelay: true, connectionsCheckingInterval: 1000 }, app);
      guardConnections(server, options.maxConnections ?? defaultMaxConnections());
      await new Promise<void>((resolve, reject) => {
        server.once('error', reject);
        server.listen(port, host, () => {
          server.off('error', reject);
          resolve();
        });
      });
      httpServer = server;
      stopMonitor = startResourceMonitor(registry, options.monitorIntervalMs ?? 1000, logger);
      return server.address() as AddressInfo;
    },
    close() {
      closing ??= (async () => {
        stopMonitor();
        const server = httpServer;
        const closed = server
          ? new Promise<void>((resolve, reject) => server.close((error) => (error ? reject(error) : resolve())))
          : Promise.resolve();
        await context.lifecycle.shutdown();
        // Nothing is in flight any more: what is left are idle keep-alive connections.
        server?.closeAllConnections();
        await closed;
        await context.chatTemplates.close();
      })();
      return closing;
    },
  };
}

function createApp(context: ServerContext, options: ServerOptions): Express {
  const app = express();
  app.disable('x-powered-by');
  app.disable('etag');
  app.use(observeRequests(context));
  app.use(checkHost(options.allowedHosts ?? []));
  // Liveness and readiness: before the key and the body parser, and answered during shutdown too.
  app.get('/health', (_req, res) => {
    if (context.lifecycle.shuttingDown) res.status(503).json({ status: 'shutting_down' });
    else res.json({ status: 'ok' });
  });
  if (options.apiKey !== undefined) app.use(['/v1', '/api', '/apply-template', '/metrics'], requireApiKey(options.apiKey));
  app.get('/metrics', async (_req, res) => {
    res.type(context.metrics.registry.contentType).send(await context.metrics.registry.metrics());
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
    res.once('close', () => void Promise.resolve(res.locals.served).then(() => {
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
      if (route === '/health' || route === '/metrics') logger.debug(summary, 'request');
      else logger.info(summary, 'request');
    }));
    next();
  };
}
