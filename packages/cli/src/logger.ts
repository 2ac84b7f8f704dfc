import { pino, type Logger } from 'pino';
import pretty from 'pino-pretty';
import type { LogLevel } from './options.js';

/**
 * Readable lines on a terminal, JSON lines otherwise (for log collectors). Plugins write to stderr
 * themselves; that output is left alone.
 */
export function createLogger(level: LogLevel, destination: NodeJS.WriteStream = process.stdout): Logger {
  if (destination.isTTY) {
    return pino({ level }, pretty({ destination, colorize: true, translateTime: 'HH:MM:ss', ignore: 'pid,hostname', sync: true }));
  }
  return pino({ level }, destination);
}
