import { afterAll, beforeAll, describe, expect, test, vi } from 'vitest';
import { settableSampler, startTestNode, type TestNode } from './testing/test-node.js';

const GIB = 1024 ** 3;
const sampler = settableSampler();
let node: TestNode;

beforeAll(async () => {
  node = await startTestNode({ sampler, monitorIntervalMs: 20 });
});

afterAll(async () => {
  await node.close();
});

describe('resource monitor', () => {
  test('at 90% of the VRAM limit it unloads the least recently used model idle for 30 checks, never one in use', async () => {
    for (const model_id of ['echo', 'echo-slow']) {
      expect((await node.post('/api/models/load', { model_id })).status).toBe(200);
    }
    const lease = await node.registry.acquireModel('echo-slow');
    try {
      sampler.usedBytes = 15 * GIB; // of a 16 GiB limit
      await vi.waitFor(() => expect(node.registry.models().map((model) => model.id)).toEqual(['echo-slow']), { timeout: 10_000 });
    } finally {
      sampler.usedBytes = 0;
      lease.release();
    }
  });
});

describe('resource monitor under pressure it cannot relieve', () => {
  test('does not unload a model between the requests of a steady client', async () => {
    const steady = await startTestNode({ sampler: settableSampler(15 * GIB), monitorIntervalMs: 100 });
    try {
      // A request every 0.5 s for 2.5 s, the pressure above 90% throughout: the model stays loaded.
      for (let i = 0; i < 5; i++) {
        expect((await steady.post('/v1/completions', { model: 'echo', prompt: 'hello' })).status).toBe(200);
        await new Promise((resolve) => setTimeout(resolve, 500));
      }
      expect(steady.registry.models().map((model) => model.id)).toEqual(['echo']);
    } finally {
      await steady.close();
    }
  });
});
