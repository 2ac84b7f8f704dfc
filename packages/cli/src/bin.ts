#!/usr/bin/env node
import { createLogger } from './logger.js';
import { parseCommandLine, UsageError } from './options.js';
import { startNode, StartupError } from './start.js';

// Exit codes: 0 clean stop (also after SIGINT/SIGTERM), 1 cannot start or crashed, 2 bad usage.
async function main(): Promise<number> {
  let parsed;
  try {
    parsed = parseCommandLine(process.argv.slice(2), (text) => process.stdout.write(text));
  } catch (error) {
    if (!(error instanceof UsageError)) throw error;
    process.stderr.write(`llm-node: ${error.message}\nSee 'llm-node --help'.\n`);
    return 2;
  }
  if (!parsed.run) return 0;

  const logger = createLogger(parsed.options.logLevel);
  let node;
  try {
    node = await startNode(parsed.options, logger);
  } catch (error) {
    if (!(error instanceof StartupError)) throw error;
    // Plain text on stderr whatever the log format: the operator has to read and act on it.
    process.stderr.write(`llm-node: ${error.message}\n`);
    return 1;
  }

  const signal = await new Promise<NodeJS.Signals>((resolve) => {
    process.once('SIGINT', resolve);
    process.once('SIGTERM', resolve);
  });
  logger.info(`${signal}: stopping (again to force)`);
  process.once(signal, () => process.exit(1));
  await node.close();
  logger.info('stopped');
  logger.flush();
  return 0;
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
