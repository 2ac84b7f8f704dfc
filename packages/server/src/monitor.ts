import type { Logger } from 'pino';
import type { Registry } from '@llm-node/registry';

/** Share of the VRAM limit at which the least recently used idle model is unloaded. */
const PRESSURE_RATIO = 0.9;

/**
 * Samples VRAM every `intervalMs` and, at 90% of the limit or more, unloads the least recently used idle
 * model. One check at a time: a slow sample skips the ticks it overlaps. Returns a function that stops it.
 */
export function startResourceMonitor(registry: Registry, intervalMs: number, logger: Logger): () => void {
  let checking = false;
  const check = async () => {
    const status = await registry.vramStatus();
    // What the devices report in use (every process), or what our models hold where the backend cannot tell.
    const usedBytes = status.usedBytes ?? status.heldBytes;
    if (usedBytes < PRESSURE_RATIO * status.limitBytes) return;
    const unloaded = await registry.unloadIdleLeastRecentlyUsed();
    const usage = { usedBytes, limitBytes: status.limitBytes };
    if (unloaded) logger.warn({ ...usage, model: unloaded.id }, 'VRAM at 90% of the limit or more: unloaded the least recently used idle model');
    // Every tick while under pressure would say this again: kept out of the default log level.
    else logger.debug(usage, 'VRAM at 90% of the limit or more, and no idle model to unload');
  };
  const timer = setInterval(() => {
    if (checking) return;
    checking = true;
    check()
      .catch((error: unknown) => logger.error({ err: error }, 'resource monitor check failed'))
      .finally(() => (checking = false));
  }, intervalMs);
  timer.unref();
  return () => clearInterval(timer);
}
