// The node under test for the benchmarks, in a process of its own so that the load client does not share its
// event loop: a registry over <enginesDir> and <modelsDir> (cpu backend) and the HTTP server on 127.0.0.1.
// Each engine runs in an engine host process, as the node runs it; with --in-process, in this process instead
// (for comparison: bench/isolation). Prints {"port": N} once listening; SIGTERM closes the server, then the
// registry, and exits.
//
//   node bench/server/serve.mjs <enginesDir> <modelsDir> [--in-process]
import { openEngine } from '@llm-node/abi-native';
import { Registry } from '@llm-node/registry';
import { createServer } from '@llm-node/server';
import { pino } from 'pino';

const [enginesDir, modelsDir, mode] = process.argv.slice(2);
const GIB = 1024 ** 3;
const gpu = {
  backend: 'cpu',
  source: 'bench',
  devices: [{ index: 0, name: 'bench', totalBytes: 16 * GIB, freeBytes: 16 * GIB, unifiedMemory: true }],
};
// A fixed reading: the monitor must not unload models because of what else the machine is doing.
const sampler = { sample: async () => [{ index: 0, totalBytes: 16 * GIB, usedBytes: 0, freeBytes: 16 * GIB }] };

const logger = pino({ level: 'warn' });
const inProcess = mode === '--in-process' ? { openEngine: async (path, options) => openEngine(path, options) } : {};
const registry = await Registry.create({ enginesDirs: [enginesDir], modelsDir, gpu, sampler, logger, ...inProcess });
const server = createServer({ registry, logger });
const { port } = await server.listen(0, '127.0.0.1');
process.stdout.write(`${JSON.stringify({ port })}\n`);

process.once('SIGTERM', async () => {
  await server.close();
  await registry.close();
  process.exit(0);
});
