import type { RegistryLogger } from './types.js';

/** Lines an engine may log per second; what is beyond is counted and said once the second is over. */
const LINES_PER_SECOND = 50;

/**
 * What an engine host writes on stdout and stderr, logged as that engine's lines (an `engine` field; stdout at
 * info, stderr at warn), never mixed into the node's own. A plugin that floods its output is cut to
 * LINES_PER_SECOND, with a count of what was dropped.
 */
export function engineOutputLogger(
  engineId: string,
  logger: RegistryLogger | undefined,
): (line: string, stream: 'stdout' | 'stderr') => void {
  let windowStart = 0;
  let logged = 0;
  let dropped = 0;
  return (line, stream) => {
    if (!logger) return;
    const now = Date.now();
    if (now - windowStart >= 1000) {
      windowStart = now;
      logged = 0;
    }
    if (logged < LINES_PER_SECOND) {
      logged++;
      if (stream === 'stderr') logger.warn({ engine: engineId, stream }, line);
      else logger.info({ engine: engineId, stream }, line);
      return;
    }
    if (dropped++ === 0) {
      setTimeout(
        () => {
          logger.warn(
            { engine: engineId, dropped },
            `the engine wrote ${dropped} more lines than are logged (${LINES_PER_SECOND} a second)`,
          );
          dropped = 0;
        },
        windowStart + 1000 - now,
      ).unref();
    }
  };
}
