// The server: an Express app over a Registry, its HTTP listener, the resource monitor and graceful close.
export { createServer } from './server.js';
export type { CloseOptions, LlmNodeServer, ServerOptions } from './server.js';
