// The engine host: a process of its own that opens one plugin and drives it for the node (engine-host.ts), so
// that whatever the plugin does (a crash, an abort, exit, a hang) costs this process and not the node. Before
// the plugin is opened it denies itself the network. Started by EngineHost.start(); not for direct use.
import { binding } from './binding.js';
import { openEngine } from './engine.js';
import { EngineError, toEngineError } from './errors.js';
import type { HostCall, HostCommand, HostEvent, HostMessage, WireError } from './host-protocol.js';
import type { Engine, Generation } from './types.js';

// How often a host with generations in flight says it is alive, when its plugins made progress.
const HEARTBEAT_MS = 250;

const send = (message: HostMessage) => process.send!(message);

let engine: Engine | undefined;
const generations = new Map<number, { generation: Generation; abort: AbortController }>();
let events: HostEvent[] = [];
let flushScheduled = false;
let lastProgress = -1;

function toWire(error: unknown): WireError {
  const e = toEngineError(error);
  return e.engineCode === undefined ? { code: e.code, message: e.message } : { code: e.code, message: e.message, engineCode: e.engineCode };
}

// All events of one turn leave as one message: a token-fast engine costs one IPC message per turn.
function emit(event: HostEvent): void {
  events.push(event);
  if (flushScheduled) return;
  flushScheduled = true;
  setImmediate(() => {
    flushScheduled = false;
    lastProgress = binding.progress();
    send({ events, progress: lastProgress });
    events = [];
  });
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
    engine = openEngine(message.path, message.expectedId === undefined ? {} : { expectedId: message.expectedId });
    return { info: engine.info, capabilities: [...engine.capabilities], network };
  }
  if (engine === undefined) throw new EngineError('closed', 'no plugin is open in this engine host');
  switch (message.call) {
    case 'init':
      return engine.init(message.config);
    case 'loadModel':
      return engine.loadModel(message.modelId, message.params);
    case 'unloadModel':
      return engine.unloadModel(message.modelId);
    case 'estimateVram':
      return engine.estimateVram(message.params);
    case 'vramUsed':
      return engine.vramUsed();
    case 'shutdown':
      return engine.shutdown();
    case 'close':
      return engine.close();
  }
}

async function generate(id: number, generation: Generation): Promise<void> {
  try {
    for await (const chunk of generation) emit({ generation: id, chunk });
    emit({ generation: id, end: { result: await generation.result } });
  } catch (error) {
    emit({ generation: id, end: { error: toWire(error) } });
  } finally {
    generations.delete(id);
  }
}

process.on('message', (message: HostCommand) => {
  if (message.call === 'generate') {
    const abort = new AbortController();
    const generation = engine!.generate(message.request, { signal: abort.signal });
    generations.set(message.generation, { generation, abort });
    void generate(message.generation, generation);
    return;
  }
  if (message.call === 'cancel') {
    generations.get(message.generation)?.abort.abort();
    return;
  }
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
