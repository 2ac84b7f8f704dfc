import type { Logger } from 'pino';
import { LOAD_STARTING, type LoadProgressListener, type Registry } from '@llm-node/registry';
import type { StatusLine } from './status-line.js';

/**
 * Loads the models named with --load, one after another, from the moment the engines are open: the node starts
 * listening meanwhile, and a request for one of them joins its load. A failed load is logged and the next one goes
 * on; a status line shows each load's bar. Resolves once the first load has been handed to its engine (or has
 * ended, or there is none); the loads go on after that.
 */
export function loadAtStart(
  registry: Registry,
  modelIds: readonly string[],
  logger: Logger,
  statusLine: StatusLine | undefined,
): Promise<void> {
  let firstStarted = () => {};
  const started = new Promise<void>((resolve) => {
    firstStarted = resolve;
  });
  void (async () => {
    for (const modelId of modelIds) {
      const bar = statusLine && progressBar(statusLine, modelId);
      try {
        await registry.loadModel(modelId, {}, (progress) => {
          if (progress.phase === LOAD_STARTING) firstStarted();
          bar?.(progress);
        });
      } catch (error) {
        const { code, message } = error as { code?: string; message: string };
        if (code === 'shutting_down') return;
        logger.error({ model: modelId, code }, `--load ${modelId}: ${message}`);
      } finally {
        firstStarted();
        statusLine?.clear();
      }
    }
  })().finally(firstStarted);
  return started;
}

const BAR_WIDTH = 30;

function progressBar(statusLine: StatusLine, modelId: string): LoadProgressListener {
  return ({ phase, fraction }) => {
    const filled = Math.round(fraction * BAR_WIDTH);
    const bar = `${'#'.repeat(filled)}${'-'.repeat(BAR_WIDTH - filled)}`;
    statusLine.show(`loading ${modelId}: ${phase} [${bar}] ${Math.round(fraction * 100)}%`);
  };
}
