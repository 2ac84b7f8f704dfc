import os from 'node:os';
import { describe, expect, it } from 'vitest';
import { detectBackend, detectGpu } from './detect.js';
import { fakeRunner, fixture } from './testing/fake-runner.js';
import { GPU_BACKENDS, type GpuBackend } from './types.js';

const nvidia = { 'nvidia-smi': fixture('nvidia-smi-h100.csv') };
const appleSilicon = { system_profiler: fixture('system-profiler-m2-max.json'), vm_stat: fixture('vm-stat.txt') };
const windowsAdapters = {
  Win32_VideoController: fixture('windows-adapters.json'),
  GPUAdapterMemory: fixture('windows-adapter-memory.json'),
};

describe('detectGpu', () => {
  it('finds CUDA on Linux', async () => {
    const result = await detectGpu({ run: fakeRunner(nvidia), platform: 'linux', arch: 'x64' });
    expect(result.found && result.detection.backend).toBe('cuda');
  });

  it('reports what it tried on a Linux machine without an NVIDIA GPU', async () => {
    expect(await detectGpu({ run: fakeRunner({}), platform: 'linux', arch: 'x64' })).toEqual({
      found: false,
      tried: ['nvidia-smi: not found on PATH'],
    });
  });

  it('finds Metal on Apple Silicon', async () => {
    const result = await detectGpu({ run: fakeRunner(appleSilicon), platform: 'darwin', arch: 'arm64' });
    expect(result.found && result.detection.backend).toBe('metal');
  });

  it('does not pick Metal on an Intel Mac', async () => {
    const run = fakeRunner({ system_profiler: fixture('system-profiler-intel-mac.json') });
    expect(await detectGpu({ run, platform: 'darwin', arch: 'x64' })).toEqual({
      found: false,
      tried: ['metal: needs Apple Silicon (this Mac is x64)'],
    });
    expect(run.calls).toEqual([]);
  });

  it('prefers CUDA on Windows when nvidia-smi answers', async () => {
    const run = fakeRunner({ ...nvidia, ...windowsAdapters });
    const result = await detectGpu({ run, platform: 'win32', arch: 'x64' });
    expect(result.found && result.detection.backend).toBe('cuda');
    expect(run.calls).toEqual(['nvidia-smi']);
  });

  it('falls back to DirectML on Windows without an NVIDIA GPU', async () => {
    const result = await detectGpu({ run: fakeRunner(windowsAdapters), platform: 'win32', arch: 'x64' });
    expect(result.found && result.detection.backend).toBe('directml');
  });

  it('lists every probe tried on Windows when nothing answers', async () => {
    const result = await detectGpu({ run: fakeRunner({}), platform: 'win32', arch: 'x64' });
    expect(result.found ? [] : result.tried).toEqual([
      'nvidia-smi: not found on PATH',
      expect.stringMatching(/System32\\nvidia-smi\.exe: not found$/),
      expect.stringMatching(/NVSMI\\nvidia-smi\.exe: not found$/),
      'powershell.exe: not found on PATH',
    ]);
  });

  it('says there is no GPU backend for other platforms', async () => {
    expect(await detectGpu({ run: fakeRunner(nvidia), platform: 'freebsd', arch: 'x64' })).toEqual({
      found: false,
      tried: ['no GPU backend for this platform (freebsd)'],
    });
  });

  it('never falls back to the cpu backend', async () => {
    for (const platform of ['linux', 'darwin', 'win32', 'freebsd'] as const) {
      const result = await detectGpu({ run: fakeRunner({}), platform, arch: 'arm64' });
      expect(result.found).toBe(false);
    }
  });

  it('turns a runner that throws into a tried line instead of throwing', async () => {
    const run = async () => {
      throw new Error('spawn EPERM');
    };
    expect(await detectGpu({ run, platform: 'linux', arch: 'x64' })).toEqual({ found: false, tried: ['nvidia-smi: failed: spawn EPERM'] });
  });
});

describe('detectBackend', () => {
  it("runs the named backend's probe whatever the platform would choose", async () => {
    const result = await detectBackend('cuda', { run: fakeRunner(nvidia), platform: 'win32' });
    expect(result.found && result.detection.source).toBe('nvidia-smi');
  });

  it("reports the named backend's failure", async () => {
    expect(await detectBackend('metal', { run: fakeRunner({}), platform: 'linux' })).toEqual({
      found: false,
      tried: ['metal: needs macOS (this system is linux)'],
    });
  });

  it("gives the cpu backend the system's RAM", async () => {
    const result = await detectBackend('cpu', { run: fakeRunner({}) });
    expect(result.found && result.detection).toEqual({
      backend: 'cpu',
      source: 'os',
      devices: [{ index: 0, name: expect.any(String), totalBytes: os.totalmem(), freeBytes: expect.any(Number), unifiedMemory: true }],
    });
    expect(result.found && result.detection.devices[0]?.name).toBe(os.cpus()[0]?.model.trim() || 'CPU');
  });

  it('answers an unknown backend name with a tried line', async () => {
    expect(await detectBackend('vulkan' as GpuBackend)).toEqual({
      found: false,
      tried: ['unknown GPU backend "vulkan" (expected cuda, metal, directml, cpu)'],
    });
  });

  it('has a probe for every backend', async () => {
    for (const backend of GPU_BACKENDS) {
      const result = await detectBackend(backend, { run: fakeRunner({}), platform: 'linux' });
      expect(result.found || !result.tried[0]?.startsWith('unknown GPU backend')).toBe(true);
    }
  });
});
