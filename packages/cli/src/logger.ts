import { pino, type Logger } from 'pino';
import pretty from 'pino-pretty';
import type { LogLevel } from './options.js';
import { StatusLine } from './status-line.js';

/**
 * Readable lines on a terminal, JSON lines otherwise (for log collectors). Plugins write to stderr
 * themselves; that output is left alone.
 */
export function createLogger(
  level: LogLevel,
  destination: NodeJS.WriteStream = process.stdout,
): { logger: Logger; statusLine: StatusLine | null } {
  if (destination.isTTY) {
    const statusLine = new StatusLine(destination);
    const logger = pino(
      { level },
      pretty({ destination: statusLine.logDestination, colorize: true, translateTime: 'HH:MM:ss', ignore: 'pid,hostname', sync: true }),
    );
    return { logger, statusLine };
  }
  return { logger: pino({ level }, destination), statusLine: null };
}
