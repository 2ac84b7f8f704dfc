/** The GPU APIs an engine plugin can be built for; `cpu` exists only when the operator names it. */
export const GPU_BACKENDS = ['cuda', 'metal', 'directml', 'cpu'] as const;

export type GpuBackend = (typeof GPU_BACKENDS)[number];

export interface GpuDevice {
  index: number;
  name: string;
  /** The memory the backend may use: VRAM, or on unified-memory machines the GPU's share of RAM. */
  totalBytes: number;
  /** Null when the tool that found the device does not report free memory. */
  freeBytes: number | null;
  /** True when the device's memory is system RAM (Apple Silicon, integrated GPUs, the cpu backend). */
  unifiedMemory: boolean;
}

export interface GpuDetection {
  backend: GpuBackend;
  devices: GpuDevice[];
  /** The command that answered (`nvidia-smi`, a full path to it, `system_profiler`, `powershell.exe`) or `os`. */
  source: string;
}

/** `tried` holds one human line per probe, for the CLI to print when no GPU is found. */
export type DetectResult = { found: true; detection: GpuDetection } | { found: false; tried: string[] };

export type CommandResult = { ok: true; stdout: string } | { ok: false; reason: string };

/** Runs a program without a shell; resolves with its stdout, or with why it failed ("not found on PATH"). */
export type CommandRunner = (file: string, args: readonly string[]) => Promise<CommandResult>;

export interface DetectOptions {
  /** Replaces the real command runner (tests feed recorded tool outputs through it). */
  run?: CommandRunner;
  platform?: NodeJS.Platform;
  arch?: string;
}

export interface VramSample {
  index: number;
  totalBytes: number;
  /** Null when the backend cannot say how much is in use (see the README for each backend). */
  usedBytes: number | null;
  freeBytes: number | null;
}

export interface VramSampler {
  /** Never rejects: a failed reading gives the last good one, or an empty list before the first. */
  sample(): Promise<VramSample[]>;
}
