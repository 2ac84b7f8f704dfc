import { EngineError } from '@llm-node/abi-native';
import type { EngineErrorCode } from '@llm-node/abi-native';

/** The `type` of the API's error body: what kind of failure, for clients to branch on. */
export type NodeErrorType =
  | 'invalid_request_error'
  | 'authentication_error'
  | 'not_found_error'
  | 'unsupported_error'
  | 'resource_error'
  | 'plugin_error'
  | 'engine_error'
  | 'server_error';

/** The HTTP status each type gets unless the error names its own. */
const STATUS_BY_TYPE: Record<NodeErrorType, number> = {
  invalid_request_error: 400,
  authentication_error: 401,
  not_found_error: 404,
  unsupported_error: 400,
  resource_error: 507,
  plugin_error: 500,
  engine_error: 500,
  server_error: 500,
};

export interface NodeErrorInit {
  type: NodeErrorType;
  /** Stable, machine-readable: `abi_mismatch`, `oom_vram`, `model_not_found`, … */
  code: string;
  /** HTTP status; defaults by type (invalid_request 400, not_found 404, resource 507, plugin/engine 500, …). */
  status?: number;
  /** The request field at fault (`temperature`, `messages[1].content`), as OpenAI's errors name it. */
  param?: string;
  cause?: unknown;
}

/**
 * The one error class of the host. Everything the registry refuses, and everything the server adds, is
 * a NodeError; `toJSON()` is the API's error body `{"error":{"message","type","code"}}` (and `param`, the
 * request field at fault, when there is one).
 */
export class NodeError extends Error {
  readonly type: NodeErrorType;
  readonly code: string;
  readonly status: number;
  readonly param: string | undefined;

  constructor(message: string, init: NodeErrorInit) {
    super(message, init.cause === undefined ? undefined : { cause: init.cause });
    this.name = 'NodeError';
    this.type = init.type;
    this.code = init.code;
    this.status = init.status ?? STATUS_BY_TYPE[init.type];
    this.param = init.param;
  }

  /** The body, with `param` only when a request field is at fault. */
  toJSON(): { error: { message: string; type: NodeErrorType; code: string; param?: string } } {
    return {
      error: { message: this.message, type: this.type, code: this.code, ...(this.param === undefined ? {} : { param: this.param }) },
    };
  }
}

/** How each EngineError code reads to a client. Opening errors keep their code; the ERR_* ones are renamed. */
const ENGINE_ERROR_MAP: Record<EngineErrorCode, Omit<NodeErrorInit, 'cause'>> = {
  invalid_argument: { type: 'invalid_request_error', code: 'invalid_argument' },
  not_initialized: { type: 'engine_error', code: 'engine_not_initialized' },
  model_not_found: { type: 'not_found_error', code: 'model_not_found' },
  model_corrupt: { type: 'invalid_request_error', code: 'model_corrupt', status: 422 },
  unsupported: { type: 'unsupported_error', code: 'unsupported' },
  out_of_memory: { type: 'resource_error', code: 'oom_vram' },
  context_overflow: { type: 'invalid_request_error', code: 'context_length_exceeded' },
  model_not_loaded: { type: 'not_found_error', code: 'model_not_loaded' },
  internal: { type: 'engine_error', code: 'engine_internal' },
  open_failed: { type: 'plugin_error', code: 'open_failed' },
  missing_symbol: { type: 'plugin_error', code: 'missing_symbol' },
  abi_mismatch: { type: 'plugin_error', code: 'abi_mismatch' },
  invalid_info: { type: 'plugin_error', code: 'invalid_info' },
  id_mismatch: { type: 'plugin_error', code: 'id_mismatch' },
  plugin_error: { type: 'plugin_error', code: 'plugin_error' },
  closed: { type: 'engine_error', code: 'engine_closed', status: 503 },
  engine_crashed: { type: 'engine_error', code: 'engine_crashed', status: 502 },
  engine_timeout: { type: 'engine_error', code: 'engine_timeout', status: 504 },
};

/**
 * Turns whatever an engine call threw into a NodeError, keeping the plugin's message: the one place where
 * EngineError codes meet the API's error types. Anything that is not an EngineError is a server_error.
 */
export function toNodeError(error: unknown): NodeError {
  if (error instanceof NodeError) return error;
  if (error instanceof EngineError) {
    const init = ENGINE_ERROR_MAP[error.code as EngineErrorCode] ?? { type: 'engine_error', code: 'engine_internal' };
    return new NodeError(error.message, { ...init, cause: error });
  }
  const message = error instanceof Error ? error.message : String(error);
  return new NodeError(message, { type: 'server_error', code: 'internal_error', cause: error });
}
