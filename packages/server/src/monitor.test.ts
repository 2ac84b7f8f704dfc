import { afterAll, beforeAll, describe, expect, test, vi } from 'vitest';
import { settableSampler, startTestNode, type TestNode } from './test-node.fixture.js';

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
  test('at 90% of the VRAM limit it unloads the least recently used idle model, never one in use', async () => {
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
