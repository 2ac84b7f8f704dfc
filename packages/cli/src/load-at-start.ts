import type { Logger } from 'pino';
import type { LoadProgressListener, Registry } from '@llm-node/registry';
import type { StatusLine } from './status-line.js';

/**
 * Loads the models named with --load, one after another, from the moment the engines are open: the node starts
 * listening meanwhile, and a request for one of them joins its load. A failed load is logged and the next one goes on; a status line shows each load's bar.
 */
export async function loadAtStart(
  registry: Registry,
  modelIds: readonly string[],
  logger: Logger,
  statusLine: StatusLine | undefined,
): Promise<void> {
  for (const modelId of modelIds) {
    try {
      await registry.loadModel(modelId, {}, statusLine && progressBar(statusLine, modelId));
    } catch (error) {
      const { code, message } = error as { code?: string; message: string };
      if (code === 'shutting_down') return;
      logger.error({ model: modelId, code }, `--load ${modelId}: ${message}`);
    } finally {
      statusLine?.clear();
    }
  }
}

const BAR_WIDTH = 30;

function progressBar(statusLine: StatusLine, modelId: string): LoadProgressListener {
  return ({ phase, fraction }) => {
    const filled = Math.round(fraction * BAR_WIDTH);
    const bar = `${'#'.repeat(filled)}${'-'.repeat(BAR_WIDTH - filled)}`;
    statusLine.show(`loading ${modelId}: ${phase} [${bar}] ${Math.round(fraction * 100)}%`);
  };
}
