// The engine host: a process of its own that opens one plugin and drives it for the node (engine-host.ts), so
// that whatever the plugin does (a crash, an abort, exit, a hang) costs this process and not the node. Before
// the plugin is opened it denies itself the network. The plugin's threads write tokens straight to the token
// pipe; no JavaScript runs here per token. Started by EngineHost.start(); not for direct use.
import { getPriority, setPriority } from 'node:os';
import { binding } from './binding.js';
import { openPluginEngine, type PluginEngine } from './engine.js';
import { EngineError, toEngineError } from './errors.js';
import { TOKEN_PIPE_FD, type HostCall, type HostCommand, type HostMessage, type WireError } from './host-protocol.js';

// How often a host with generations in flight says it is alive, when its plugins made progress.
const HEARTBEAT_MS = 250;

// The plugin's threads run 5 nice levels below the node: on a machine whose cores they keep busy, the node's
// thread (the requests, the streams, the health checks) then gets a core as soon as it wakes, where at the same
// level it waited for the plugin's compute threads (0.5-5 ms at a time on two cores; a stream's first token came
// a whole decode step late). Set here, before the plugin's threads exist: on Linux a thread has a nice value of
// its own, and new threads take their creator's. Relative, so a node started with `nice` keeps the gap; on
// Windows +5 stays in the normal priority class. A system that refuses the call leaves the host at the node's
// level, which serves as well, only less promptly.
const NICER_THAN_THE_NODE = 5;
try {
  setPriority(Math.min(19, getPriority() + NICER_THAN_THE_NODE));
} catch {}

const send = (message: HostMessage) => {
  if (process.connected) process.send!(message);
};

binding.openTokenPipe(TOKEN_PIPE_FD);
let engine: PluginEngine | undefined;
const generations = new Map<number, AbortController>();
let lastProgress = -1;

function toWire(error: unknown): WireError {
  const e = toEngineError(error);
  return e.engineCode === undefined ? { code: e.code, message: e.message } : { code: e.code, message: e.message, engineCode: e.engineCode };
}

setInterval(() => {
  if (generations.size === 0) return;
  const progress = binding.progress();
  if (progress !== lastProgress) {
    lastProgress = progress;
    send({ progress });
  }
}, HEARTBEAT_MS).unref();

async function answer(message: HostCall): Promise<unknown> {
  if (message.call === 'open') {
    const network = message.allowNetwork ? { enforced: false, how: 'allowed by the operator' } : binding.denyNetwork();
    engine = openPluginEngine(message.path, message.expectedId === undefined ? {} : { expectedId: message.expectedId });
    return { info: engine.info, capabilities: [...engine.capabilities], network };
  }
  if (engine === undefined) throw new EngineError('closed', 'no plugin is open in this engine host');
  switch (message.call) {
    case 'init':
      return engine.init(message.config);
    case 'loadModel':
      return engine.loadModel(message.modelId, message.params, (progress) => send({ loading: message.id, progress }));
    case 'unloadModel':
      return engine.unloadModel(message.modelId);
    case 'estimateVram':
      return engine.estimateVram(message.params);
    case 'vramUsed':
      return engine.vramUsed();
    case 'modelStats':
      return engine.modelStats(message.modelId);
    case 'embed':
      return engine.embed(message.request);
    case 'shutdown':
      return engine.shutdown();
    case 'close':
      return engine.close();
  }
}

function generate(id: number, request: HostCommand & { call: 'generate' }): void {
  const abort = new AbortController();
  const generation = engine!.generateToPipe(request.request, id, abort.signal);
  if (generation.isEnded) {
    // Refused before it reached the plugin: no frame of it will come on the pipe.
    generation.result.then(
      (result) => send({ generation: id, end: { result } }),
      (error: unknown) => send({ generation: id, end: { error: toWire(error) } }),
    );
    return;
  }
  generations.set(id, abort);
  void generation.ended.then(() => generations.delete(id));
}

process.on('message', (message: HostCommand) => {
  if (message.call === 'generate') return generate(message.generation, message);
  if (message.call === 'cancel') return generations.get(message.generation)?.abort();
  answer(message).then(
    (value) => {
      send({ reply: message.id, value });
      if (message.call === 'close') process.exit(0);
    },
    (error: unknown) => {
      send({ reply: message.id, error: toWire(error) });
      if (message.call === 'open') process.exit(0); // nothing to drive
    },
  );
});

// The node is gone (or closed the channel): so is the reason to run.
process.on('disconnect', () => process.exit(0));

// Ctrl-C in a terminal and a service manager's stop signal the whole process group, this process with the node.
// The node answers them by draining, and the generations running here are what it waits for: their end is the
// node's to decide (it closes the channel, or kills this process).
for (const signal of ['SIGINT', 'SIGTERM'] as const) process.on(signal, () => {});
