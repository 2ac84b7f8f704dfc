#!/usr/bin/env node
import { EngineHost } from '@llm-node/abi-native';
import type { ParsedCommandLine } from './options.js';
import type { RunningNode } from './start.js';

// Each engine plugin runs in a host process of its own, opened once the node's modules are loaded and the GPU is
// found: the first host process starts now, so that its own start overlaps theirs. Hence the modules below are
// imported only after it.
EngineHost.prestart();
const [{ createLogger }, { parseCommandLine, UsageError }, { StartupError, startNode }] = await Promise.all([
  import('./logger.js'),
  import('./options.js'),
  import('./start.js'),
]);

// Exit codes: 0 clean stop (also after SIGINT/SIGTERM), 1 cannot start, crashed, or forced by a third signal,
// 2 bad usage.
// Signals this close together are one operator action delivered twice.
const SAME_SIGNAL_MS = 500;

async function main(): Promise<number> {
  let parsed: ParsedCommandLine;
  try {
    parsed = parseCommandLine(process.argv.slice(2), (text) => process.stdout.write(text));
  } catch (error) {
    if (!(error instanceof UsageError)) throw error;
    process.stderr.write(`llm-node: ${error.message}\nSee 'llm-node --help'.\n`);
    return 2;
  }
  if (!parsed.run) return 0;

  const { logger, statusLine } = await createLogger(parsed.options.logLevel);
  // Listening before start-up begins: a signal that came between the "listening" line and a listener set up after it
  // would kill the node the default way, and one during start-up stops the node as soon as it is up.
  let node: RunningNode | null = null;
  const signal = listenForShutdown(() => {
    logger.info('ending the requests in flight now (once more to exit at once)');
    void node?.close({ graceMs: 0 });
  });
  try {
    node = await startNode(parsed.options, logger, statusLine ?? undefined);
  } catch (error) {
    if (!(error instanceof StartupError)) throw error;
    // Plain text on stderr whatever the log format: the operator has to read and act on it.
    process.stderr.write(`llm-node: ${error.message}\n`);
    return 1;
  }

  const received = await signal;
  const grace = parsed.options.shutdownGraceSeconds;
  logger.info(
    `${received}: draining: new requests are refused, those in flight have ${grace} s to finish (${received} again to end them now)`,
  );
  await node.close({ graceMs: grace * 1000 });
  logger.info('stopped');
  logger.flush();
  return 0;
}

/**
 * Resolves at the first SIGINT or SIGTERM; calls `endNow` at the next, and exits 1 at the one after. One listener
 * for the whole shutdown: were the signals left without one for a moment, a signal in that moment would kill the
 * process the default way.
 */
function listenForShutdown(endNow: () => void): Promise<NodeJS.Signals> {
  let firstAt: number | null = null;
  let more = 0;
  return new Promise((resolve) => {
    const onSignal = (received: NodeJS.Signals) => {
      if (firstAt === null) {
        firstAt = performance.now();
        resolve(received);
        return;
      }
      // Ctrl-C reaches every process of the terminal's group, and a parent that passes signals on (pnpm start's
      // script, a shell wrapper) sends the same one again a moment later: that is still the first.
      if (more === 0 && performance.now() - firstAt < SAME_SIGNAL_MS) return;
      more += 1;
      if (more === 1) endNow();
      else process.exit(1);
    };
    process.on('SIGINT', onSignal);
    process.on('SIGTERM', onSignal);
  });
}

main().then(
  (code) => {
    process.exitCode = code;
  },
  (error: unknown) => {
    process.stderr.write(`llm-node: unexpected error: ${(error as Error)?.stack ?? String(error)}\n`);
    process.exitCode = 1;
  },
);
