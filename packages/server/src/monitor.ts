import type { Logger } from 'pino';
import type { Registry } from '@llm-node/registry';

/** Share of the VRAM limit at which the least recently used idle model is unloaded. */
const PRESSURE_RATIO = 0.9;
/**
 * For how many checks a model must have been idle to be unloaded for pressure (30 s at the default interval).
 * Without it, pressure that unloading does not relieve (other processes' memory; on `cpu` the whole system's
 * RAM) would unload a model between every two requests of a client and load it again for the next.
 */
const MIN_IDLE_CHECKS = 30;

/**
 * Samples VRAM every `intervalMs` and, at 90% of the limit or more, unloads the least recently used model idle
 * for 30 intervals or more. One check at a time: a slow sample skips the ticks it overlaps. Returns a function
 * that stops it.
 */
export function startResourceMonitor(registry: Registry, intervalMs: number, logger: Logger): () => void {
  let checking = false;
  const check = async () => {
    const status = await registry.vramStatus();
    // What the devices report in use (every process), or what our models hold where the backend cannot tell.
    const usedBytes = status.usedBytes ?? status.heldBytes;
    if (usedBytes < PRESSURE_RATIO * status.limitBytes) return;
    const unloaded = await registry.unloadIdleLeastRecentlyUsed({ idleForMs: MIN_IDLE_CHECKS * intervalMs });
    const usage = { usedBytes, limitBytes: status.limitBytes };
    if (unloaded)
      logger.warn({ ...usage, model: unloaded.id }, 'VRAM at 90% of the limit or more: unloaded the least recently used idle model');
    // Every tick while under pressure would say this again: kept out of the default log level.
    else logger.debug(usage, 'VRAM at 90% of the limit or more, and no model idle long enough to unload');
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
