import { createHash, timingSafeEqual } from 'node:crypto';
import type { RequestHandler } from 'express';
import { apiError } from './errors.js';

const digest = (text: string) => createHash('sha256').update(text).digest();

/** The scheme's name is case-insensitive (RFC 9110). */
const BEARER = /^bearer +(\S+)\s*$/i;

/**
 * Requires `Authorization: Bearer <apiKey>`. Both sides are hashed first so that the constant-time
 * comparison sees equal lengths and the key's length does not leak either.
 */
export function requireApiKey(apiKey: string): RequestHandler {
  const expected = digest(apiKey);
  return (req, _res, next) => {
    const header = req.headers.authorization ?? '';
    const given = BEARER.exec(header)?.[1];
    if (given !== undefined && timingSafeEqual(digest(given), expected)) {
      next();
      return;
    }
    next(apiError('invalid_api_key', header === '' ? 'Missing API key: send Authorization: Bearer <key>' : 'Invalid API key'));
  };
}
