import { detectCpu } from './cpu.js';
import { probeCuda } from './cuda.js';
import { probeDirectml } from './directml.js';
import { probeMetal } from './metal.js';
import { neverThrowing, runCommand } from './run.js';
import { GPU_BACKENDS, type CommandRunner, type DetectOptions, type DetectResult, type GpuBackend } from './types.js';

/**
 * Finds the platform's GPU backend: CUDA on Linux, Metal on Apple Silicon, CUDA then DirectML on Windows.
 * Never answers `cpu`: the node requires a GPU unless the operator names `cpu` (see detectBackend).
 */
export async function detectGpu(options: DetectOptions = {}): Promise<DetectResult> {
  const { run, platform, arch } = resolveOptions(options);
  switch (platform) {
    case 'linux':
      return probeCuda(run, platform);
    case 'darwin':
      if (arch !== 'arm64') return { found: false, tried: [`metal: needs Apple Silicon (this Mac is ${arch})`] };
      return probeMetal(run, platform);
    case 'win32': {
      const cuda = await probeCuda(run, platform);
      if (cuda.found) return cuda;
      const directml = await probeDirectml(run, platform);
      return directml.found ? directml : { found: false, tried: [...cuda.tried, ...directml.tried] };
    }
    default:
      return { found: false, tried: [`no GPU backend for this platform (${platform})`] };
  }
}

/** Probes the backend the operator named (`--gpu-backend`); `cpu` always succeeds with system RAM. */
export async function detectBackend(backend: GpuBackend, options: DetectOptions = {}): Promise<DetectResult> {
  const { run, platform } = resolveOptions(options);
  switch (backend) {
    case 'cuda':
      return probeCuda(run, platform);
    case 'metal':
      return probeMetal(run, platform);
    case 'directml':
      return probeDirectml(run, platform);
    case 'cpu':
      return { found: true, detection: detectCpu() };
    default:
      // Reached from JavaScript callers or unchecked input: answer like any failed probe rather than throw.
      return { found: false, tried: [`unknown GPU backend ${JSON.stringify(backend)} (expected ${GPU_BACKENDS.join(', ')})`] };
  }
}

export function resolveOptions(options: DetectOptions): { run: CommandRunner; platform: NodeJS.Platform; arch: string } {
  return {
    run: neverThrowing(options.run ?? runCommand),
    platform: options.platform ?? process.platform,
    arch: options.arch ?? process.arch,
  };
}
