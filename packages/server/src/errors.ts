import type { ErrorRequestHandler, RequestHandler } from 'express';
import type { Logger } from 'pino';
import { NodeError, type NodeErrorType } from '@llm-node/registry';

/**
 * The codes the server raises itself, with their type and HTTP status. Registry and engine errors come
 * as NodeErrors that carry their own; the README's "Errors" table lists every code a client can see.
 */
const SERVER_ERRORS = {
  invalid_request_error: ['invalid_request_error', 400],
  invalid_json: ['invalid_request_error', 400],
  invalid_body: ['invalid_request_error', 400],
  invalid_parameter: ['invalid_request_error', 400],
  unsupported_parameter: ['invalid_request_error', 400],
  invalid_api_key: ['authentication_error', 401],
  not_found: ['not_found_error', 404],
  host_not_allowed: ['authentication_error', 403],
  payload_too_large: ['invalid_request_error', 413],
  unsupported_encoding: ['invalid_request_error', 415],
  headers_too_large: ['invalid_request_error', 431],
  chat_template_error: ['invalid_request_error', 422],
  internal_error: ['server_error', 500],
  shutting_down: ['server_error', 503],
} as const satisfies Record<string, readonly [NodeErrorType, number]>;

export type ServerErrorCode = keyof typeof SERVER_ERRORS;

export function apiError(code: ServerErrorCode, message: string, param?: string): NodeError {
  const [type, status] = SERVER_ERRORS[code];
  return new NodeError(message, { type, code, status, ...(param === undefined ? {} : { param }) });
}

/** Anything thrown while serving a request, as the NodeError the client is shown. */
export function toApiError(error: unknown): NodeError {
  if (error instanceof NodeError) return error;
  // Anything else is a bug: the client gets no details, the log gets them all.
  return bodyParserError(error) ?? apiError('internal_error', 'Internal server error');
}

/**
 * express.json() reports its failures as http-errors (a `status`, and a `type` for the ones it names); they are
 * the client's, and become the envelope too: a body that does not decompress (garbage or cut-short gzip,
 * deflate, brotli) is a 400, an encoding it cannot read a 415.
 */
function bodyParserError(error: unknown): NodeError | null {
  if (typeof error !== 'object' || error === null || !('status' in error)) return null;
  const { type, status, message } = error as { type?: unknown; status: unknown; message?: unknown };
  if (type === 'entity.parse.failed') return apiError('invalid_json', `The request body is not valid JSON: ${String(message)}`);
  if (type === 'entity.too.large') return apiError('payload_too_large', 'The request body is larger than the server accepts');
  if (type === 'encoding.unsupported') return apiError('unsupported_encoding', `The request body's ${String(message)}`);
  if (typeof status === 'number' && status >= 400 && status < 500)
    return apiError('invalid_body', `The request body cannot be read: ${String(message)}`);
  return null;
}

/** Registered after every route: unmatched paths get the envelope instead of Express's HTML page. */
export const notFound: RequestHandler = (req, _res, next) => {
  next(apiError('not_found', `No route for ${req.method} ${req.path}`));
};

/** The last middleware: every error becomes the error body `{"error":{"message","type","code"}}` with its status; 5xx are logged with their cause, refusals for lack of memory as a warning line. */
export function errorHandler(logger: Logger): ErrorRequestHandler {
  return (error, req, res, _next) => {
    const apiErr = toApiError(error);
    if (apiErr.type === 'resource_error') {
      // A limit doing its job (a model larger than the VRAM left): worth a line, not a stack trace.
      logger.warn({ method: req.method, url: req.originalUrl, code: apiErr.code }, `request refused: ${apiErr.message}`);
    } else if (apiErr.status >= 500 && apiErr.code !== 'shutting_down') {
      logger.error({ err: error, method: req.method, url: req.originalUrl }, 'request failed');
    }
    // A stream that already began reports its own errors in-band; anything else still open is cut off.
    if (res.headersSent) {
      res.end();
      return;
    }
    res.status(apiErr.status).json(apiErr.toJSON());
  };
}
