import type { Logger } from 'pino';
import type { Registry } from '@llm-node/registry';
import type { ChatTemplates } from './chat-template.js';
import type { Lifecycle } from './lifecycle.js';
import type { Metrics } from './metrics.js';
import type { WriteTurns } from './write-turns.js';

/** What the routes of one server share. */
export interface ServerContext {
  registry: Registry;
  logger: Logger;
  lifecycle: Lifecycle;
  metrics: Metrics;
  chatTemplates: ChatTemplates;
  writeTurns: WriteTurns;
}
