import { sep } from 'node:path';
import { NodeError } from './errors.js';

/** The most of an engine's or a plugin's message a client is shown. */
const MAX_MESSAGE = 1000;

/**
 * An error as a client may read it: paths inside the node's folders (engines, models) relative to the folder,
 * and at most MAX_MESSAGE characters (a plugin's message can be megabytes). The error as it was stays the
 * cause, for the log.
 */
export function publicError(error: NodeError, folders: readonly string[]): NodeError {
  let message = error.message;
  for (const folder of folders) message = message.split(folder.endsWith(sep) ? folder : folder + sep).join('');
  if (message.length > MAX_MESSAGE)
    message = `${message.slice(0, MAX_MESSAGE)}… (${message.length - MAX_MESSAGE} more characters in the log)`;
  if (message === error.message) return error;
  return new NodeError(message, { type: error.type, code: error.code, status: error.status, cause: error.cause ?? error });
}
