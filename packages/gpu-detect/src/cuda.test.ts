import os from 'node:os';
import { describe, expect, it } from 'vitest';
import { parseNvidiaSmi, probeCuda, sampleCuda } from './cuda.js';
import { fakeRunner, fixture } from './testing/fake-runner.js';

const MIB = 2 ** 20;

describe('parseNvidiaSmi', () => {
  it('reads one H100 from nvidia-smi CSV in MiB', () => {
    expect(parseNvidiaSmi(fixture('nvidia-smi-h100.csv'))).toEqual({
      ok: true,
      value: [{ index: 0, name: 'NVIDIA H100 80GB HBM3', totalMiB: 81559, freeMiB: 81090, usedMiB: 1 }],
    });
  });

  it('reads one row per GPU of a two-GPU machine', () => {
    const parsed = parseNvidiaSmi(fixture('nvidia-smi-two-gpus.csv'));
    expect(parsed.ok && parsed.value.map((row) => [row.index, row.name, row.totalMiB])).toEqual([
      [0, 'NVIDIA GeForce RTX 4090', 24564],
      [1, 'NVIDIA GeForce RTX 3060', 12288],
    ]);
  });

  it('reads Windows line endings', () => {
    expect(parseNvidiaSmi('0, NVIDIA GeForce RTX 4070, 12282, 11094, 1015\r\n').ok).toBe(true);
  });

  it('keeps a name that contains a comma whole', () => {
    const parsed = parseNvidiaSmi('0, Odd, Name, 1024, 1000, 24\n');
    expect(parsed.ok && parsed.value[0]?.name).toBe('Odd, Name');
  });

  it('reads [N/A] memory as unknown rather than failing', () => {
    expect(parseNvidiaSmi('0, NVIDIA GB10, [N/A], [N/A], [N/A]\n')).toEqual({
      ok: true,
      value: [{ index: 0, name: 'NVIDIA GB10', totalMiB: null, freeMiB: null, usedMiB: null }],
    });
  });

  it('says no GPU was reported for empty output', () => {
    expect(parseNvidiaSmi('\n')).toEqual({ ok: false, reason: 'no NVIDIA GPU reported' });
  });

  it('names the line it cannot read', () => {
    expect(parseNvidiaSmi('Failed to initialize NVML: Driver/library version mismatch\n')).toEqual({
      ok: false,
      reason: 'unexpected output line "Failed to initialize NVML: Driver/library version mismatch"',
    });
  });
});

describe('probeCuda', () => {
  it('finds an H100 with its total and free VRAM in bytes', async () => {
    const result = await probeCuda(fakeRunner({ 'nvidia-smi': fixture('nvidia-smi-h100.csv') }), 'linux');
    expect(result).toEqual({
      found: true,
      detection: {
        backend: 'cuda',
        source: 'nvidia-smi',
        devices: [{ index: 0, name: 'NVIDIA H100 80GB HBM3', totalBytes: 81559 * MIB, freeBytes: 81090 * MIB, unifiedMemory: false }],
      },
    });
  });

  it('counts a GPU without its own memory figures as unified memory of system RAM size', async () => {
    const result = await probeCuda(fakeRunner({ 'nvidia-smi': '0, NVIDIA GB10, [N/A], [N/A], [N/A]\n' }), 'linux');
    expect(result.found && result.detection.devices[0]).toMatchObject({ totalBytes: os.totalmem(), freeBytes: null, unifiedMemory: true });
  });

  it('says nvidia-smi is not on PATH on a Linux machine without it', async () => {
    expect(await probeCuda(fakeRunner({}), 'linux')).toEqual({ found: false, tried: ['nvidia-smi: not found on PATH'] });
  });

  it('passes on why nvidia-smi failed', async () => {
    const run = fakeRunner({
      'nvidia-smi': {
        ok: false,
        reason: "exited with code 9: NVIDIA-SMI has failed because it couldn't communicate with the NVIDIA driver.",
      },
    });
    const result = await probeCuda(run, 'linux');
    expect(result.found ? [] : result.tried).toEqual([
      "nvidia-smi: exited with code 9: NVIDIA-SMI has failed because it couldn't communicate with the NVIDIA driver.",
    ]);
  });

  it('tries the usual Windows install paths when nvidia-smi is not on PATH', async () => {
    const run = fakeRunner({ NVSMI: fixture('nvidia-smi-two-gpus.csv') });
    const result = await probeCuda(run, 'win32');
    expect(run.calls).toHaveLength(3);
    expect(run.calls[1]).toMatch(/System32\\nvidia-smi\.exe$/);
    expect(result.found && result.detection.source).toMatch(/NVIDIA Corporation\\NVSMI\\nvidia-smi\.exe$/);
    expect(result.found && result.detection.devices.map((device) => device.index)).toEqual([0, 1]);
  });

  it('lists every Windows path it tried', async () => {
    const result = await probeCuda(fakeRunner({}), 'win32');
    expect(result.found ? [] : result.tried).toEqual([
      'nvidia-smi: not found on PATH',
      expect.stringMatching(/System32\\nvidia-smi\.exe: not found$/),
      expect.stringMatching(/NVSMI\\nvidia-smi\.exe: not found$/),
    ]);
  });
});

describe('sampleCuda', () => {
  it('reads used and free VRAM per GPU from the nvidia-smi that found them', async () => {
    const run = fakeRunner({ 'nvidia-smi': fixture('nvidia-smi-two-gpus.csv') });
    expect(await sampleCuda(run, 'nvidia-smi')).toEqual([
      { index: 0, totalBytes: 24564 * MIB, usedBytes: 329 * MIB, freeBytes: 23817 * MIB },
      { index: 1, totalBytes: 12288 * MIB, usedBytes: 9 * MIB, freeBytes: 11909 * MIB },
    ]);
  });

  it('gives null when nvidia-smi fails', async () => {
    expect(await sampleCuda(fakeRunner({}), 'nvidia-smi')).toBeNull();
  });
});
