import os from 'node:os';
import { describe, expect, it } from 'vitest';
import { createVramSampler } from './sampler.js';
import { fakeRunner, fixture } from './testing/fake-runner.js';
import type { CommandResult, GpuDetection } from './types.js';

const MIB = 2 ** 20;
const h100: GpuDetection = {
  backend: 'cuda',
  source: 'nvidia-smi',
  devices: [{ index: 0, name: 'NVIDIA H100 80GB HBM3', totalBytes: 81559 * MIB, freeBytes: 81090 * MIB, unifiedMemory: false }],
};

describe('createVramSampler', () => {
  it('samples CUDA VRAM with the nvidia-smi that detected it', async () => {
    const sampler = createVramSampler(h100, { run: fakeRunner({ 'nvidia-smi': fixture('nvidia-smi-h100.csv') }) });
    expect(await sampler.sample()).toEqual([{ index: 0, totalBytes: 81559 * MIB, usedBytes: 1 * MIB, freeBytes: 81090 * MIB }]);
  });

  it('gives the last good figures when a later sample fails', async () => {
    const answers: CommandResult[] = [
      { ok: true, stdout: fixture('nvidia-smi-h100.csv') },
      { ok: false, reason: 'gave no answer within 15 s' },
    ];
    const sampler = createVramSampler(h100, { run: async () => answers.shift() ?? { ok: false, reason: 'gone' } });
    const first = await sampler.sample();
    expect(await sampler.sample()).toEqual(first);
  });

  it('gives an empty list when no sample has succeeded yet', async () => {
    const sampler = createVramSampler(h100, { run: fakeRunner({}) });
    expect(await sampler.sample()).toEqual([]);
  });

  it('does not reject when the runner throws', async () => {
    const sampler = createVramSampler(h100, {
      run: () => {
        throw new Error('boom');
      },
    });
    expect(await sampler.sample()).toEqual([]);
  });

  it('samples system RAM for the cpu backend', async () => {
    const cpu: GpuDetection = {
      backend: 'cpu',
      source: 'os',
      devices: [{ index: 0, name: 'CPU', totalBytes: os.totalmem(), freeBytes: null, unifiedMemory: true }],
    };
    const [sample] = await createVramSampler(cpu).sample();
    expect(sample?.totalBytes).toBe(os.totalmem());
    expect((sample?.usedBytes ?? -1) + (sample?.freeBytes ?? -1)).toBe(os.totalmem());
  });
});
