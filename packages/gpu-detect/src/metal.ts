import os from 'node:os';
import { isRecord, type Parsed } from './parsed.js';
import { triedLine } from './run.js';
import type { CommandRunner, DetectResult, GpuDetection, GpuDevice, VramSample } from './types.js';

const MIB = 2 ** 20;
const GIB = 2 ** 30;

/** A Metal GPU as system_profiler lists it; `vramBytes` is null for unified memory (Apple Silicon). */
export interface MetalGpu {
  name: string;
  vramBytes: number | null;
}

export function parseSystemProfiler(stdout: string): Parsed<MetalGpu[]> {
  let root: unknown;
  try {
    root = JSON.parse(stdout);
  } catch {
    return { ok: false, reason: 'printed something other than JSON' };
  }
  const items = isRecord(root) ? root.SPDisplaysDataType : undefined;
  if (!Array.isArray(items)) return { ok: false, reason: 'printed no SPDisplaysDataType list' };
  const gpus = items
    .filter(isRecord)
    .filter(supportsMetal)
    .map((item) => ({
      name: text(item.sppci_model) ?? text(item._name) ?? 'GPU',
      vramBytes: isApple(item) ? null : parseProfilerSize(text(item.spdisplays_vram)),
    }));
  return gpus.length > 0 ? { ok: true, value: gpus } : { ok: false, reason: 'no Metal GPU reported' };
}

/**
 * The share of RAM that Metal lets the GPU wire: `iogpu.wired_limit_mb` when the operator set it (non-zero),
 * else what macOS reports as recommendedMaxWorkingSetSize: about 2/3 of RAM up to 36 GiB and 3/4 above.
 */
export function metalWorkingSetBytes(ramBytes: number, wiredLimitMiB: number): number {
  if (wiredLimitMiB > 0) return wiredLimitMiB * MIB;
  return Math.floor(ramBytes <= 36 * GIB ? (ramBytes * 2) / 3 : (ramBytes * 3) / 4);
}

/** RAM that can be had without paging: free, inactive and speculative pages of `vm_stat`. */
export function parseVmStat(stdout: string): Parsed<number> {
  const pageSize = /page size of (\d+) bytes/.exec(stdout)?.[1];
  const pages = (label: string) => new RegExp(`^Pages ${label}:\\s+(\\d+)\\.?$`, 'm').exec(stdout)?.[1];
  const counts = [pages('free'), pages('inactive'), pages('speculative')];
  if (pageSize === undefined || counts.includes(undefined)) return { ok: false, reason: 'printed no page counts' };
  return { ok: true, value: counts.reduce((sum, count) => sum + Number(count), 0) * Number(pageSize) };
}

export async function probeMetal(run: CommandRunner, platform: NodeJS.Platform): Promise<DetectResult> {
  if (platform !== 'darwin') return { found: false, tried: [`metal: needs macOS (this system is ${platform})`] };
  const profiler = await run('system_profiler', ['SPDisplaysDataType', '-json']);
  if (!profiler.ok) return { found: false, tried: [triedLine('system_profiler', profiler)] };
  const gpus = parseSystemProfiler(profiler.stdout);
  if (!gpus.ok) return { found: false, tried: [`system_profiler: ${gpus.reason}`] };

  const budget = metalWorkingSetBytes(os.totalmem(), await wiredLimitMiB(run));
  const available = await availableRam(run);
  const devices = gpus.value.map(
    (gpu, index): GpuDevice =>
      gpu.vramBytes === null
        ? { index, name: gpu.name, totalBytes: budget, freeBytes: freeOf(budget, available), unifiedMemory: true }
        : { index, name: gpu.name, totalBytes: gpu.vramBytes, freeBytes: null, unifiedMemory: false },
  );
  return { found: true, detection: { backend: 'metal', source: 'system_profiler', devices } };
}

/** Unified memory is free for the GPU as far as RAM is available, up to its working-set budget. */
export async function sampleMetal(run: CommandRunner, detection: GpuDetection): Promise<VramSample[] | null> {
  const available = await availableRam(run);
  if (available === null) return null;
  return detection.devices.map((device) => {
    if (!device.unifiedMemory) return { index: device.index, totalBytes: device.totalBytes, usedBytes: null, freeBytes: null };
    const freeBytes = Math.min(device.totalBytes, available);
    return { index: device.index, totalBytes: device.totalBytes, usedBytes: device.totalBytes - freeBytes, freeBytes };
  });
}

// iogpu.wired_limit_mb exists from macOS 14 on; where it is missing or unreadable the default share applies.
async function wiredLimitMiB(run: CommandRunner): Promise<number> {
  const result = await run('sysctl', ['-n', 'iogpu.wired_limit_mb']);
  const value = result.ok ? result.stdout.trim() : '';
  return /^\d+$/.test(value) ? Number(value) : 0;
}

async function availableRam(run: CommandRunner): Promise<number | null> {
  const result = await run('vm_stat', []);
  const parsed = result.ok ? parseVmStat(result.stdout) : null;
  return parsed?.ok ? parsed.value : null;
}

function freeOf(budget: number, available: number | null): number | null {
  return available === null ? null : Math.min(budget, available);
}

// Apple Silicon always has Metal; other GPUs (Intel Macs) say whether they support it.
function supportsMetal(item: Record<string, unknown>): boolean {
  const metal = text(item.spdisplays_mtlgpufamilysupport) ?? text(item.spdisplays_metal);
  return isApple(item) || (metal !== undefined && !/not/i.test(metal));
}

function isApple(item: Record<string, unknown>): boolean {
  return text(item.spdisplays_vendor) === 'sppci_vendor_Apple';
}

/** system_profiler writes dedicated VRAM as "8 GB" or "1536 MB". */
function parseProfilerSize(value: string | undefined): number | null {
  const match = value === undefined ? null : /^(\d+)\s*(MB|GB)$/i.exec(value.trim());
  if (!match) return null;
  return Number(match[1]) * (match[2]?.toUpperCase() === 'GB' ? 2 ** 30 : 2 ** 20);
}

function text(value: unknown): string | undefined {
  return typeof value === 'string' && value !== '' ? value : undefined;
}
