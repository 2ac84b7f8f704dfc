import { Router } from 'express';
import type { CatalogueEntry, EngineRecord, LoadedModel } from '@llm-node/registry';
import type { ServerContext } from './context.js';
import { toApiError } from './errors.js';
import { loadModelBody, parseBody, unloadModelBody } from './schemas.js';

/** The node API: engines and models. */
export function nodeRoutes(context: ServerContext): Router {
  const { registry } = context;
  const router = Router();

  router.get('/api/engines', (_req, res) => {
    res.json({ engines: registry.engines.map(engineJson) });
  });

  // The engines folders read again: new plugins open, rebuilt ones are replaced, removed ones close, each old
  // one once the requests it has are done.
  router.post('/api/engines/reload', async (_req, res) => {
    const reload = await registry.reloadEngines();
    res.json({ ...reload, engines: registry.engines.map(engineJson) });
  });

  router.get('/api/models', async (_req, res) => {
    res.json({ models: (await registry.catalogue()).map(catalogueJson) });
  });

  router.post('/api/models/load', async (req, res) => {
    const body = parseBody(loadModelBody, req.body);
    const options = { format: body.format, contextLength: body.context_length, parallel: body.parallel };
    if (!body.stream) {
      const model = await registry.loadModel(body.model_id, options);
      res.json({ status: 'loaded', model: modelJson(model) });
      return;
    }
    // One JSON object per line, as the load moves, then the same object as without `stream`. The status line
    // waits for the first progress report: a load refused at once (unknown model, no VRAM) keeps its status.
    const line = (value: object) => {
      if (!res.headersSent) res.status(200).setHeader('Content-Type', 'application/x-ndjson; charset=utf-8');
      if (!res.destroyed) res.write(`${JSON.stringify(value)}\n`);
    };
    try {
      const model = await registry.loadModel(body.model_id, options, ({ phase, fraction }) => line({ status: 'loading', phase, fraction }));
      line({ status: 'loaded', model: modelJson(model) });
      res.end();
    } catch (error) {
      if (res.headersSent) line(toApiError(error).toJSON());
      throw error; // the error handler logs it, and answers or ends the response
    }
  });

  router.post('/api/models/unload', async (req, res) => {
    const body = parseBody(unloadModelBody, req.body);
    await registry.unloadModel(body.model_id);
    res.json({ status: 'unloaded', model_id: body.model_id });
  });

  return router;
}

/**
 * The fields the README's example shows first; skipped and rejected plugins carry their error envelope's inner object. No path
 * of this machine: the log has those.
 */
function engineJson(engine: EngineRecord): object {
  return {
    id: engine.id,
    version: engine.manifest?.version ?? null,
    gpu_backend: engine.manifest?.gpu_backend ?? null,
    architectures: engine.manifest?.architectures ?? [],
    status: engine.status,
    formats: engine.manifest?.formats ?? [],
    capabilities: engine.capabilities,
    ...(engine.error ? { error: engine.error.toJSON().error } : {}),
    ...(engine.warnings.length > 0 ? { warnings: engine.warnings } : {}),
  };
}

function modelJson(model: LoadedModel): object {
  return {
    id: model.id,
    engine: model.engineId,
    format: model.format,
    quantization: model.quantization,
    architecture: model.architecture,
    context_length: model.contextLength,
    parallel: model.parallel,
    vram_bytes: model.vramBytes,
    embedding_length: model.embeddingLength,
    last_used_at: new Date(model.lastUsedAt).toISOString(),
    active_requests: model.activeRequests,
  };
}

/** A model of the catalogue: what it is and its state; while loaded, also what modelJson says of it. */
function catalogueJson(entry: CatalogueEntry): object {
  return {
    id: entry.id,
    state: entry.state,
    engine: entry.engineId,
    format: entry.format,
    quantization: entry.quantization,
    architecture: entry.architecture,
    size_bytes: entry.sizeBytes,
    estimated_vram_bytes: entry.estimatedVramBytes,
    ...(entry.loaded ? modelJson(entry.loaded) : {}),
    ...(entry.error ? { error: entry.error.toJSON().error } : {}),
  };
}
