// A whole node in the test's process, on a free loopback port, silent, as the end-to-end tests start it.
import { parseCommandLine, startNode, type RunningNode } from '@llm-node/cli';
import { pino } from 'pino';

/** startNode with the command's own defaults for everything but the given folders, backend and context. */
export function startInProcessNode(options: {
  enginesDir: string;
  modelsDir: string;
  gpuBackend: string;
  contextLength: number;
}): Promise<RunningNode> {
  const parsed = parseCommandLine(
    [
      ['--engines-dir', options.enginesDir],
      ['--models-dir', options.modelsDir],
      ['--gpu-backend', options.gpuBackend],
      ['--context-length', String(options.contextLength)],
      ['--port', '0'],
      ['--shutdown-grace', '0'],
      ['--log-level', 'silent'],
    ].flat(),
    () => {},
  );
  if (!parsed.run) throw new Error('the command line asked for help instead of a node');
  return startNode(parsed.options, pino({ level: 'silent' }));
}
