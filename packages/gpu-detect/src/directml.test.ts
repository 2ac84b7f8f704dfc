import os from 'node:os';
import { describe, expect, it } from 'vitest';
import { parseAdapterList, parseAdapterUsage, probeDirectml, sampleDirectml } from './directml.js';
import { fakeRunner, fixture } from './testing/fake-runner.js';
import type { GpuDetection } from './types.js';

const GIB = 2 ** 30;
const SHARED = Math.floor(os.totalmem() / 2);

describe('parseAdapterList', () => {
  it("takes the registry's qwMemorySize over WMI's AdapterRAM, which stops at 4 GiB", () => {
    const parsed = parseAdapterList(fixture('windows-adapters.json'));
    expect(parsed.ok && parsed.value[0]).toEqual({ name: 'NVIDIA GeForce RTX 4070', dedicatedBytes: 12878610432 });
  });

  it("leaves out Microsoft's software adapters", () => {
    const parsed = parseAdapterList(fixture('windows-adapters.json'));
    expect(parsed.ok && parsed.value.map((adapter) => adapter.name)).toEqual(['NVIDIA GeForce RTX 4070', 'Intel(R) UHD Graphics 770']);
  });

  it('reads a single adapter written without brackets', () => {
    expect(parseAdapterList('{"Name":"AMD Radeon RX 7900 XTX","AdapterRAM":4293918720,"QwMemorySize":25753026560}')).toEqual({
      ok: true,
      value: [{ name: 'AMD Radeon RX 7900 XTX', dedicatedBytes: 25753026560 }],
    });
  });

  it("reads an older driver's MemorySize, as a DWORD or as raw little-endian bytes", () => {
    const list = JSON.stringify([
      { Name: 'GPU A', AdapterRAM: 2147483648, MemorySize: 2147483648 },
      { Name: 'GPU B', AdapterRAM: 4293918720, MemorySize: [0, 0, 0, 128, 1, 0, 0, 0] },
    ]);
    const parsed = parseAdapterList(list);
    expect(parsed.ok && parsed.value.map((adapter) => adapter.dedicatedBytes)).toEqual([2 * GIB, 6 * GIB]);
  });

  it('falls back to AdapterRAM when the registry says nothing', () => {
    const parsed = parseAdapterList('[{"Name":"GPU","AdapterRAM":2147483648,"QwMemorySize":null,"MemorySize":null}]');
    expect(parsed.ok && parsed.value[0]?.dedicatedBytes).toBe(2 * GIB);
  });

  it.each([
    ['', 'printed something other than JSON'],
    ['[null]', 'no hardware display adapter reported'],
    ['[{"Name":"Microsoft Basic Render Driver","AdapterRAM":0}]', 'no hardware display adapter reported'],
    ['[{"Name":"GPU","AdapterRAM":"big"}]', 'no hardware display adapter reported'],
  ])('explains unusable output %j', (stdout, reason) => {
    expect(parseAdapterList(stdout)).toEqual({ ok: false, reason });
  });
});

describe('parseAdapterUsage', () => {
  it('reads dedicated and shared usage per adapter LUID', () => {
    const parsed = parseAdapterUsage(fixture('windows-adapter-memory.json'));
    expect(parsed.ok && parsed.value[1]).toEqual({ dedicatedBytes: 1895825408, sharedBytes: 119803904 });
  });
});

describe('probeDirectml', () => {
  it("finds the hardware adapters with dedicated VRAM, and integrated ones with Windows' shared half of RAM", async () => {
    const run = fakeRunner({
      Win32_VideoController: fixture('windows-adapters.json'),
      GPUAdapterMemory: fixture('windows-adapter-memory.json'),
    });
    expect(await probeDirectml(run, 'win32')).toEqual({
      found: true,
      detection: {
        backend: 'directml',
        source: 'powershell.exe',
        devices: [
          { index: 0, name: 'NVIDIA GeForce RTX 4070', totalBytes: 12878610432, freeBytes: null, unifiedMemory: false },
          { index: 1, name: 'Intel(R) UHD Graphics 770', totalBytes: 134217728 + SHARED, freeBytes: null, unifiedMemory: true },
        ],
      },
    });
  });

  it('reads free VRAM from the usage counters when there is one hardware adapter', async () => {
    const run = fakeRunner({
      Win32_VideoController: '[{"Name":"NVIDIA GeForce RTX 4070","AdapterRAM":4293918720,"QwMemorySize":12878610432}]',
      GPUAdapterMemory: fixture('windows-adapter-memory.json'),
    });
    const result = await probeDirectml(run, 'win32');
    expect(result.found && result.detection.devices[0]?.freeBytes).toBe(12878610432 - 1895825408);
  });

  it('says DirectML needs Windows elsewhere', async () => {
    expect(await probeDirectml(fakeRunner({}), 'darwin')).toEqual({
      found: false,
      tried: ['directml: needs Windows (this system is darwin)'],
    });
  });

  it('passes on why the adapter list could not be read', async () => {
    expect(await probeDirectml(fakeRunner({}), 'win32')).toEqual({ found: false, tried: ['powershell.exe: not found on PATH'] });
    expect(await probeDirectml(fakeRunner({ Win32_VideoController: '[]' }), 'win32')).toEqual({
      found: false,
      tried: ['powershell.exe: no hardware display adapter reported'],
    });
  });
});

describe('sampleDirectml', () => {
  const device = { name: 'GPU', freeBytes: null, unifiedMemory: false };
  const single: GpuDetection = { backend: 'directml', source: 'powershell.exe', devices: [{ ...device, index: 0, totalBytes: 12 * GIB }] };
  const usage = fakeRunner({ GPUAdapterMemory: fixture('windows-adapter-memory.json') });

  it("counts the busiest adapter's dedicated usage against a single discrete GPU", async () => {
    expect(await sampleDirectml(usage, single)).toEqual([
      { index: 0, totalBytes: 12 * GIB, usedBytes: 1895825408, freeBytes: 12 * GIB - 1895825408 },
    ]);
  });

  it('adds shared usage for an integrated GPU', async () => {
    const integrated: GpuDetection = { ...single, devices: [{ ...device, index: 0, totalBytes: 8 * GIB, unifiedMemory: true }] };
    const [sample] = (await sampleDirectml(usage, integrated)) ?? [];
    expect(sample?.usedBytes).toBe(1895825408 + 119803904);
  });

  it('leaves used and free unknown when several adapters share the counters', async () => {
    const two: GpuDetection = {
      ...single,
      devices: [
        { ...device, index: 0, totalBytes: 12 * GIB },
        { ...device, index: 1, totalBytes: 8 * GIB },
      ],
    };
    expect(await sampleDirectml(usage, two)).toEqual([
      { index: 0, totalBytes: 12 * GIB, usedBytes: null, freeBytes: null },
      { index: 1, totalBytes: 8 * GIB, usedBytes: null, freeBytes: null },
    ]);
  });

  it('gives null when PowerShell fails', async () => {
    expect(await sampleDirectml(fakeRunner({}), single)).toBeNull();
  });
});
