import type { EngineErrorCode } from './types.js';

/** The one error class of this package: a stable `code`, and the plugin's own message where it gave one. */
export class EngineError extends Error {
  readonly code: EngineErrorCode;
  /** The ERR_* value the plugin returned, when the error is a plugin's failure. */
  readonly engineCode?: number;

  constructor(code: EngineErrorCode, message: string, options: { engineCode?: number; cause?: unknown } = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'EngineError';
    this.code = code;
    if (options.engineCode !== undefined) this.engineCode = options.engineCode;
  }
}

/** engine_api.h's ERR_* values. Any other value reads as internal, as the header says. */
const ERR_CODES: readonly EngineErrorCode[] = [
  'invalid_argument', // 1
  'not_initialized',
  'model_not_found',
  'model_corrupt',
  'unsupported',
  'out_of_memory',
  'context_overflow',
  'model_not_loaded',
  'internal', // 9
];

/** The codes the native half raises itself (native/plugin.cc ThrowHostError and CallOutcome). */
const HOST_CODES = new Set<string>(['open_failed', 'missing_symbol', 'plugin_error', 'closed', 'internal']);

/** What the native half throws or rejects with. */
interface NativeError {
  /** A failure the host found itself. */
  code?: string;
  /** A plugin's return code. */
  engineCode?: number;
  /** The entry point that failed. */
  call?: string;
  /** The plugin's engine_get_last_error() text, or the host's finding; may be empty. */
  message?: string;
}

/** Every failure of the native half becomes an EngineError here, and only here. */
export function toEngineError(error: unknown): EngineError {
  if (error instanceof EngineError) return error;
  const native = (typeof error === 'object' && error !== null ? error : {}) as NativeError;
  if (typeof native.engineCode === 'number') {
    const known = ERR_CODES[native.engineCode - 1];
    const code = known ?? 'internal';
    const message =
      native.message ||
      (known
        ? `${native.call} failed with ERR_${known.toUpperCase()} (${native.engineCode})`
        : `${native.call} failed with ${native.engineCode}, an error code engine_api.h does not define`);
    return new EngineError(code, message, { engineCode: native.engineCode });
  }
  if (typeof native.code === 'string' && HOST_CODES.has(native.code)) {
    return new EngineError(native.code as EngineErrorCode, native.message || `${native.call} failed`);
  }
  return new EngineError('internal', error instanceof Error ? error.message : String(error), { cause: error });
}
