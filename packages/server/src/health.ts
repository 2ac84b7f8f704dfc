import { Router } from 'express';
import type { ModelActivity } from '@llm-node/registry';
import type { ServerContext } from './context.js';

/** Why the node cannot take requests now, or null when it can. */
export function notReady({ lifecycle, registry }: ServerContext): 'draining' | 'no_engine' | null {
  if (lifecycle.draining) return 'draining';
  if (!registry.engines.some((engine) => engine.status === 'loaded')) return 'no_engine';
  return null;
}

/**
 * Liveness and readiness, for load balancers and orchestrators: `/health/live` answers while the process runs;
 * `/health` answers 200 only while the node takes requests (an engine is loaded, and it is not draining), and
 * with `?model=<id>` only while that model is loaded, so a router can send a model's requests to the nodes
 * that hold it. Otherwise 503, saying why.
 */
export function healthRoutes(context: ServerContext): Router {
  const router = Router();
  router.get('/health/live', (_req, res) => {
    res.json({ status: 'alive' });
  });
  router.get('/health', (req, res) => {
    const reason = notReady(context);
    if (reason !== null) {
      res.status(503).json({ status: reason });
      return;
    }
    const { model } = req.query;
    if (typeof model === 'string') {
      const loaded = context.registry.models().some((m) => m.id === model);
      res.status(loaded ? 200 : 503).json({ status: loaded ? 'ok' : 'model_not_loaded', model });
      return;
    }
    res.json({ status: 'ok' });
  });
  return router;
}

/**
 * How much of its share of traffic the node wants, 1–100 (HAProxy's weight, in percent): 100 with nothing to
 * do, less as its sequences fill (requests running and waiting, against the sequences of its loaded models)
 * or its KV caches do, whichever is fuller; never 0, which HAProxy would read as drain.
 */
export function trafficWeight(activity: readonly ModelActivity[]): number {
  const sequences = activity.reduce((sum, model) => sum + model.parallel, 0);
  if (sequences === 0) return 100;
  const requests = activity.reduce((sum, model) => sum + model.running + model.waiting, 0);
  const kv = Math.max(0, ...activity.map((model) => model.kvCacheUsage ?? 0));
  const load = Math.min(1, Math.max(kv, requests / sequences));
  return Math.max(1, Math.round(100 * (1 - load)));
}
