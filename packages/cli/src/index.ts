// Run a node from code, as the llm-node command does.
export { startNode, StartupError } from './start.js';
export type { RunningNode } from './start.js';

// The command line: flags, environment, defaults (a UsageError for a bad one).
export { parseCommandLine, UsageError } from './options.js';
export type { NodeOptions, ParsedCommandLine, LogLevel } from './options.js';
