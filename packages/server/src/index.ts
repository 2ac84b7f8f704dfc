export { createServer } from './server.js';
export type { LlmNodeServer, ServerOptions } from './server.js';
export { FALLBACK_CHAT_TEMPLATE } from './chat-template.js';
