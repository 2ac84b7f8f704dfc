import { pino, type Logger } from 'pino';
import type { LogLevel } from './options.js';
import { StatusLine } from './status-line.js';

/**
 * Readable lines on a terminal, JSON lines otherwise (for log collectors). Plugins write to stderr
 * themselves; that output is left alone.
 */
export async function createLogger(
  level: LogLevel,
  destination: NodeJS.WriteStream = process.stdout,
): Promise<{ logger: Logger; statusLine: StatusLine | null }> {
  if (destination.isTTY) {
    const { default: pretty } = await import('pino-pretty'); // only a terminal needs it, and it is slow to load
    const statusLine = new StatusLine(destination);
    const logger = pino(
      { level },
      pretty({ destination: statusLine.logDestination, colorize: true, translateTime: 'HH:MM:ss', ignore: 'pid,hostname', sync: true }),
    );
    return { logger, statusLine };
  }
  return { logger: pino({ level }, destination), statusLine: null };
}
