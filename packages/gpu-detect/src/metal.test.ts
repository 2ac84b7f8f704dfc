import os from 'node:os';
import { describe, expect, it } from 'vitest';
import { metalWorkingSetBytes, parseSystemProfiler, parseVmStat, probeMetal, sampleMetal } from './metal.js';
import { fakeRunner, fixture } from './testing/fake-runner.js';

const GIB = 2 ** 30;
const MIB = 2 ** 20;
// free + inactive + speculative pages of fixtures/vm-stat.txt, 16 KiB each
const VM_STAT_AVAILABLE = (61724 + 1560467 + 14233) * 16384;

describe('parseSystemProfiler', () => {
  it('reads an Apple M2 Max as a Metal GPU on unified memory', () => {
    expect(parseSystemProfiler(fixture('system-profiler-m2-max.json'))).toEqual({
      ok: true,
      value: [{ name: 'Apple M2 Max', vramBytes: null }],
    });
  });

  it("reads an Intel Mac's discrete VRAM and treats its integrated GPU as shared memory", () => {
    expect(parseSystemProfiler(fixture('system-profiler-intel-mac.json'))).toEqual({
      ok: true,
      value: [
        { name: 'Intel UHD Graphics 630', vramBytes: null },
        { name: 'AMD Radeon Pro 5500M', vramBytes: 4 * GIB },
      ],
    });
  });

  it('reads the older spdisplays_metal key', () => {
    const json = JSON.stringify({
      SPDisplaysDataType: [{ _name: 'Radeon', spdisplays_metal: 'spdisplays_supported', spdisplays_vram: '2048 MB' }],
    });
    expect(parseSystemProfiler(json)).toEqual({ ok: true, value: [{ name: 'Radeon', vramBytes: 2 * GIB }] });
  });

  it('says no Metal GPU was reported when none supports Metal', () => {
    const json = JSON.stringify({ SPDisplaysDataType: [{ _name: 'Old GPU', spdisplays_vram: '256 MB' }] });
    expect(parseSystemProfiler(json)).toEqual({ ok: false, reason: 'no Metal GPU reported' });
  });

  it.each([
    ['', 'printed something other than JSON'],
    ['{"SPDisplaysDataType":', 'printed something other than JSON'],
    ['[]', 'printed no SPDisplaysDataType list'],
    ['{"SPDisplaysDataType":{}}', 'printed no SPDisplaysDataType list'],
    ['{"SPDisplaysDataType":[null, 3]}', 'no Metal GPU reported'],
  ])('explains unusable output %j', (stdout, reason) => {
    expect(parseSystemProfiler(stdout)).toEqual({ ok: false, reason });
  });
});

describe('metalWorkingSetBytes', () => {
  it.each([
    [8 * GIB, 0, Math.floor((8 * GIB * 2) / 3)],
    [16 * GIB, 0, Math.floor((16 * GIB * 2) / 3)],
    [36 * GIB, 0, 24 * GIB],
    [64 * GIB, 0, 48 * GIB],
    [128 * GIB, 0, 96 * GIB],
    [64 * GIB, 57344, 56 * GIB],
  ])('gives %d bytes of RAM with iogpu.wired_limit_mb=%d a budget of %d bytes', (ram, wired, budget) => {
    expect(metalWorkingSetBytes(ram, wired)).toBe(budget);
  });
});

describe('parseVmStat', () => {
  it('adds free, inactive and speculative pages', () => {
    expect(parseVmStat(fixture('vm-stat.txt'))).toEqual({ ok: true, value: VM_STAT_AVAILABLE });
  });

  it('refuses output without page counts', () => {
    expect(parseVmStat('vm_stat: command failed')).toEqual({ ok: false, reason: 'printed no page counts' });
  });
});

describe('probeMetal', () => {
  const mac = (wiredLimit: string) =>
    fakeRunner({
      system_profiler: fixture('system-profiler-m2-max.json'),
      'iogpu.wired_limit_mb': wiredLimit,
      vm_stat: fixture('vm-stat.txt'),
    });

  it('budgets the default share of RAM when iogpu.wired_limit_mb is 0', async () => {
    const budget = metalWorkingSetBytes(os.totalmem(), 0);
    expect(await probeMetal(mac('0\n'), 'darwin')).toEqual({
      found: true,
      detection: {
        backend: 'metal',
        source: 'system_profiler',
        devices: [
          { index: 0, name: 'Apple M2 Max', totalBytes: budget, freeBytes: Math.min(budget, VM_STAT_AVAILABLE), unifiedMemory: true },
        ],
      },
    });
  });

  it("budgets the operator's iogpu.wired_limit_mb when it is set", async () => {
    const result = await probeMetal(mac('57344\n'), 'darwin');
    expect(result.found && result.detection.devices[0]?.totalBytes).toBe(56 * GIB);
  });

  it('falls back to the default share where sysctl does not know iogpu.wired_limit_mb (before macOS 14)', async () => {
    const run = fakeRunner({
      system_profiler: fixture('system-profiler-m2-max.json'),
      'iogpu.wired_limit_mb': { ok: false, reason: "exited with code 1: sysctl: unknown oid 'iogpu.wired_limit_mb'" },
    });
    const result = await probeMetal(run, 'darwin');
    expect(result.found && result.detection.devices[0]).toMatchObject({
      totalBytes: metalWorkingSetBytes(os.totalmem(), 0),
      freeBytes: null,
    });
  });

  it("keeps a discrete GPU's own VRAM", async () => {
    const run = fakeRunner({ system_profiler: fixture('system-profiler-intel-mac.json') });
    const result = await probeMetal(run, 'darwin');
    expect(result.found && result.detection.devices[1]).toEqual({
      index: 1,
      name: 'AMD Radeon Pro 5500M',
      totalBytes: 4 * GIB,
      freeBytes: null,
      unifiedMemory: false,
    });
  });

  it('says Metal needs macOS elsewhere', async () => {
    expect(await probeMetal(fakeRunner({}), 'linux')).toEqual({ found: false, tried: ['metal: needs macOS (this system is linux)'] });
  });

  it('passes on why system_profiler gave nothing', async () => {
    expect(await probeMetal(fakeRunner({}), 'darwin')).toEqual({ found: false, tried: ['system_profiler: not found on PATH'] });
    expect(await probeMetal(fakeRunner({ system_profiler: '{"SPDisplaysDataType":[]}' }), 'darwin')).toEqual({
      found: false,
      tried: ['system_profiler: no Metal GPU reported'],
    });
  });
});

describe('sampleMetal', () => {
  const detection = {
    backend: 'metal' as const,
    source: 'system_profiler',
    devices: [{ index: 0, name: 'Apple M2 Max', totalBytes: 48 * GIB, freeBytes: null, unifiedMemory: true }],
  };

  it('counts unified memory free as far as RAM is available, up to the budget', async () => {
    const [sample] = (await sampleMetal(fakeRunner({ vm_stat: fixture('vm-stat.txt') }), detection)) ?? [];
    expect(sample).toEqual({ index: 0, totalBytes: 48 * GIB, usedBytes: 48 * GIB - VM_STAT_AVAILABLE, freeBytes: VM_STAT_AVAILABLE });
  });

  it('never reports more free than the budget', async () => {
    const small = { ...detection, devices: [{ ...detection.devices[0]!, totalBytes: 512 * MIB }] };
    const [sample] = (await sampleMetal(fakeRunner({ vm_stat: fixture('vm-stat.txt') }), small)) ?? [];
    expect(sample).toEqual({ index: 0, totalBytes: 512 * MIB, usedBytes: 0, freeBytes: 512 * MIB });
  });

  it('gives null when vm_stat fails', async () => {
    expect(await sampleMetal(fakeRunner({}), detection)).toBeNull();
  });
});
