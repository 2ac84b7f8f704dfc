import { afterEach, describe, expect, it, vi } from 'vitest';
import { parseCommandLine, UsageError } from './options.js';
import { versionLine } from './version.js';

const parse = (...argv: string[]) => {
  const result = parseCommandLine(argv, () => {});
  if (!result.run) throw new Error('expected options');
  return result.options;
};

afterEach(() => vi.unstubAllEnvs());

describe('llm-node command line', () => {
  it('reads --engines-dir, --vram-limit and --monitor-interval', () => {
    const options = parse('--engines-dir', './engines', '--vram-limit', '8G', '--monitor-interval', '1000');
    expect(options).toMatchObject({ enginesDir: './engines', vramLimitBytes: 8 * 1024 ** 3, monitorIntervalMs: 1000 });
  });

  it('reads LLM_NODE_ENGINES_DIR, LLM_NODE_VRAM_LIMIT and LLM_NODE_MONITOR_INTERVAL_MS', () => {
    vi.stubEnv('LLM_NODE_ENGINES_DIR', '/custom/path/engines');
    vi.stubEnv('LLM_NODE_VRAM_LIMIT', '8589934592');
    vi.stubEnv('LLM_NODE_MONITOR_INTERVAL_MS', '250');
    expect(parse()).toMatchObject({ enginesDir: '/custom/path/engines', vramLimitBytes: 8589934592, monitorIntervalMs: 250 });
  });

  it('lets a flag win over its environment variable', () => {
    vi.stubEnv('LLM_NODE_VRAM_LIMIT', '4G');
    vi.stubEnv('LLM_NODE_PORT', '4000');
    expect(parse('--vram-limit', '8G', '--port', '5000')).toMatchObject({ vramLimitBytes: 8 * 1024 ** 3, port: 5000 });
  });

  it('defaults to ./models on 127.0.0.1:3000, detecting the GPU, with no VRAM limit of its own and nothing loaded at start', () => {
    expect(parse()).toEqual({
      enginesDir: undefined,
      modelsDir: './models',
      vramLimitBytes: undefined,
      monitorIntervalMs: 1000,
      port: 3000,
      host: '127.0.0.1',
      gpuBackend: undefined,
      gpuDevice: 0,
      allowNetwork: [],
      engineStallTimeoutSeconds: undefined,
      modelLoadTimeoutSeconds: undefined,
      apiKey: undefined,
      allowedHosts: [],
      maxConnections: undefined,
      shutdownGraceSeconds: 30,
      agentPort: undefined,
      logLevel: 'info',
      contextLength: undefined,
      parallel: undefined,
      load: [],
    });
  });

  it('reads the GPU to serve from, the engines allowed the network and the engine time limits', () => {
    vi.stubEnv('LLM_NODE_ALLOW_NETWORK', 'remote_engine, other');
    expect(parse('--gpu-device', '1', '--engine-stall-timeout', '30', '--model-load-timeout', '1200')).toMatchObject({
      gpuDevice: 1,
      allowNetwork: ['remote_engine', 'other'],
      engineStallTimeoutSeconds: 30,
      modelLoadTimeoutSeconds: 1200,
    });
  });

  it('reads the shutdown grace and the agent check port', () => {
    expect(parse('--shutdown-grace', '0', '--agent-port', '3101')).toMatchObject({ shutdownGraceSeconds: 0, agentPort: 3101 });
  });

  it('reads the Host names allowed, "all" included, and the connection cap', () => {
    expect(parse('--allowed-hosts', 'llm.lan,.corp.example', '--max-connections', '2048')).toMatchObject({
      allowedHosts: ['llm.lan', '.corp.example'],
      maxConnections: 2048,
    });
    expect(parse('--allowed-hosts', 'all')).toMatchObject({ allowedHosts: 'all' });
  });

  it.each([
    [['--gpu-device', '-1'], "'-1'"],
    [['--vram-limit', '8X'], "'8X'"],
    [['--port', '70000'], "'70000'"],
    [['--monitor-interval', 'soon'], "'soon'"],
    [['--gpu-backend', 'vulkan'], "'vulkan'"],
    [['--parallel', '0'], "'0'"],
    [['--verbose'], "'--verbose'"],
  ])('refuses %j, quoting the value', (argv, quoted) => {
    expect(() => parse(...argv)).toThrow(UsageError);
    expect(() => parse(...argv)).toThrow(quoted);
  });

  it('names the environment variable a bad value came from', () => {
    vi.stubEnv('LLM_NODE_MONITOR_INTERVAL_MS', 'often');
    expect(() => parse()).toThrow("value 'often' from env 'LLM_NODE_MONITOR_INTERVAL_MS' is invalid");
  });

  it('answers --version with the host version and its engine ABI, and does not run', () => {
    let printed = '';
    expect(parseCommandLine(['--version'], (text) => (printed += text))).toEqual({ run: false });
    expect(printed.trim()).toBe(versionLine());
    expect(versionLine()).toMatch(/^llm-node \d+\.\d+\.\d+ \(engine ABI 1\)$/);
  });

  it('answers --help with every flag', () => {
    let printed = '';
    expect(parseCommandLine(['--help'], (text) => (printed += text))).toEqual({ run: false });
    for (const flag of [
      '--engines-dir',
      '--models-dir',
      '--vram-limit',
      '--monitor-interval',
      '--port',
      '--host',
      '--gpu-backend',
      '--gpu-device',
      '--allow-network',
      '--engine-stall-timeout',
      '--model-load-timeout',
      '--api-key',
      '--allowed-hosts',
      '--max-connections',
      '--log-level',
    ]) {
      expect(printed).toContain(flag);
    }
  });
});
