// The node under test for bench/server/run.mjs, in a process of its own so that the load client does not
// share its event loop: a registry over <enginesDir> and <modelsDir> (cpu backend) and the HTTP server on
// 127.0.0.1. Prints {"port": N} once listening; SIGTERM closes the server, then the registry, and exits.
import { createRequire } from 'node:module';
import { createServer } from '../../packages/server/dist/index.js';
import { Registry } from '../../packages/registry/dist/index.js';

// pino is the server's dependency; take it from there rather than the bench's own folder.
const { pino } = createRequire(new URL('../../packages/server/package.json', import.meta.url))('pino');

const [enginesDir, modelsDir] = process.argv.slice(2);
const GIB = 1024 ** 3;
const gpu = {
  backend: 'cpu',
  source: 'bench',
  devices: [{ index: 0, name: 'bench', totalBytes: 16 * GIB, freeBytes: 16 * GIB, unifiedMemory: true }],
};
// A fixed reading: the monitor must not unload models because of what else the machine is doing.
const sampler = { sample: async () => [{ index: 0, totalBytes: 16 * GIB, usedBytes: 0, freeBytes: 16 * GIB }] };

const logger = pino({ level: 'warn' });
const registry = await Registry.create({ enginesDirs: [enginesDir], modelsDir, gpu, sampler, logger });
const server = createServer({ registry, logger });
const { port } = await server.listen(0, '127.0.0.1');
process.stdout.write(`${JSON.stringify({ port })}\n`);

process.once('SIGTERM', async () => {
  await server.close();
  await registry.close();
  process.exit(0);
});
