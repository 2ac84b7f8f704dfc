import { Router } from 'express';
import { NodeError, type LoadedModel } from '@llm-node/registry';
import { chatFormat, textFormat } from './completion-format.js';
import type { ServerContext } from './context.js';
import { serveEmbeddings } from './embeddings.js';
import { serveCompletion } from './generation.js';
import { chatCompletionBody, completionBody, generationOptions, parseBody } from './schemas.js';
import { forcedCallSchema } from './tool-calls.js';

/** The OpenAI-compatible surface, and llama.cpp's /apply-template. */
export function openAiRoutes(context: ServerContext): Router {
  const router = Router();

  router.get('/v1/models', (_req, res) => {
    res.json({ object: 'list', data: context.registry.models().map(modelObject) });
  });

  router.get('/v1/models/:id', (req, res) => {
    const model = context.registry.models().find((m) => m.id === req.params.id);
    if (!model) {
      throw new NodeError(`Model '${req.params.id}' is not loaded`, { type: 'not_found_error', code: 'model_not_loaded' });
    }
    res.json(modelObject(model));
  });

  router.post('/v1/chat/completions', async (req, res) => {
    const body = parseBody(chatCompletionBody, req.body);
    const forcedCall = forcedCallSchema(body.tools, body.tool_choice, body.parallel_tool_calls !== false);
    const format = chatFormat(body.model);
    await serveCompletion(context, res, {
      modelId: body.model,
      stream: body.stream === true,
      includeUsage: body.stream_options?.include_usage === true,
      options: generationOptions(body, forcedCall),
      prompt: (model) => context.chatTemplates.render(model, body),
      format,
      toolCalls:
        body.tools?.length && body.tool_choice !== 'none'
          ? { format, forced: forcedCall !== null, names: new Set(body.tools.map((tool) => tool.function.name)) }
          : null,
    });
  });

  router.post('/v1/completions', async (req, res) => {
    const body = parseBody(completionBody, req.body);
    const prompt = typeof body.prompt === 'string' ? body.prompt : body.prompt.join('');
    await serveCompletion(context, res, {
      modelId: body.model,
      stream: body.stream === true,
      includeUsage: body.stream_options?.include_usage === true,
      options: generationOptions(body),
      prompt: () => prompt,
      format: textFormat(body.model),
      toolCalls: null,
    });
  });

  router.post('/v1/embeddings', (req, res) => serveEmbeddings(context, req, res));

  // As llama.cpp's server: the chat body in, the prompt the model would be given out.
  router.post('/apply-template', async (req, res) => {
    const body = parseBody(chatCompletionBody, req.body);
    const lease = await context.registry.acquireModel(body.model);
    try {
      res.json({ prompt: await context.chatTemplates.render(lease.model.info, body) });
    } finally {
      lease.release();
    }
  });

  return router;
}

/** A model as OpenAI's models API describes one. */
function modelObject(model: LoadedModel): object {
  return { id: model.id, object: 'model', created: Math.floor(model.loadedAt / 1000), owned_by: model.engineId };
}
