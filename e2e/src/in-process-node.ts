// A whole node in the test's process, on a free loopback port, silent, as the end-to-end tests start it.
import { startNode, type NodeOptions, type RunningNode } from '@llm-node/cli';
import { pino } from 'pino';

/** startNode with the command's settings for a test: the given folders and backend, the rest at rest. */
export function startInProcessNode(
  options: Pick<NodeOptions, 'enginesDir' | 'modelsDir' | 'gpuBackend' | 'contextLength'>,
): Promise<RunningNode> {
  return startNode(
    {
      vramLimitBytes: undefined,
      monitorIntervalMs: 1000,
      port: 0,
      host: '127.0.0.1',
      gpuDevice: 0,
      allowNetwork: [],
      engineStallTimeoutSeconds: undefined,
      modelLoadTimeoutSeconds: undefined,
      apiKey: undefined,
      allowedHosts: [],
      maxConnections: undefined,
      shutdownGraceSeconds: 0,
      agentPort: undefined,
      logLevel: 'silent',
      parallel: 4,
      load: [],
      ...options,
    },
    pino({ level: 'silent' }),
  );
}
