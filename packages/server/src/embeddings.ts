// POST /v1/embeddings as OpenAI answers it: unit vectors (the engine gives them as the model computes them), cut
// to `dimensions` and scaled again when asked, as floats or as base64 of little-endian float32.
import type { Request, Response } from 'express';
import type { ServerContext } from './context.js';
import { apiError } from './errors.js';
import { embeddingsBody, parseBody } from './schemas.js';

export async function serveEmbeddings(context: ServerContext, req: Request, res: Response): Promise<void> {
  const body = parseBody(embeddingsBody, req.body);
  const inputs = typeof body.input === 'string' ? [body.input] : body.input;
  if (!inputs.every((input) => typeof input === 'string')) {
    throw apiError('unsupported_parameter', 'Token ids as input are not supported: send the text', 'input');
  }
  const abort = new AbortController();
  res.on('close', () => abort.abort());
  const lease = await context.registry.acquireModel(body.model);
  try {
    const dimensions = body.dimensions ?? lease.model.embeddingLength;
    if (lease.model.embeddingLength > 0 && dimensions > lease.model.embeddingLength) {
      throw apiError(
        'invalid_parameter',
        `dimensions: model '${body.model}' gives embeddings of ${lease.model.embeddingLength}, not more`,
        'dimensions',
      );
    }
    const { embeddings, promptTokens } = await lease.embed({ inputs, addSpecial: true, parseSpecial: true }, { signal: abort.signal });
    const base64 = body.encoding_format === 'base64';
    res.json({
      object: 'list',
      data: embeddings.map((embedding, index) => {
        const vector = unitVector(embedding.subarray(0, dimensions));
        return { object: 'embedding', index, embedding: base64 ? Buffer.from(vector.buffer).toString('base64') : Array.from(vector) };
      }),
      model: body.model,
      usage: { prompt_tokens: promptTokens, total_tokens: promptTokens },
    });
  } finally {
    lease.release();
  }
}

/** `vector` scaled to length 1 (a zero vector stays zero), in a buffer of its own. */
function unitVector(vector: Float32Array): Float32Array {
  let sum = 0;
  for (const x of vector) sum += x * x;
  const scale = sum > 0 ? 1 / Math.sqrt(sum) : 0;
  return vector.map((x) => x * scale);
}
