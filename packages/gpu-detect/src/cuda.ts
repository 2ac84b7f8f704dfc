import os from 'node:os';
import path from 'node:path';
import type { Parsed } from './parsed.js';
import { triedLine } from './run.js';
import type { CommandRunner, DetectResult, GpuDevice, VramSample } from './types.js';

const MIB = 2 ** 20;
const QUERY = ['--query-gpu=index,name,memory.total,memory.free,memory.used', '--format=csv,noheader,nounits'];

/** One line of nvidia-smi's CSV; memory in MiB, null where it prints `[N/A]` or `[Not Supported]`. */
export interface NvidiaSmiRow {
  index: number;
  name: string;
  totalMiB: number | null;
  freeMiB: number | null;
  usedMiB: number | null;
}

export function parseNvidiaSmi(stdout: string): Parsed<NvidiaSmiRow[]> {
  const lines = stdout
    .split(/\r?\n/)
    .map((line) => line.trim())
    .filter((line) => line !== '');
  if (lines.length === 0) return { ok: false, reason: 'no NVIDIA GPU reported' };
  const rows: NvidiaSmiRow[] = [];
  for (const line of lines) {
    const fields = line.split(',').map((field) => field.trim());
    const [index, ...rest] = fields;
    // The memory figures are the last three fields; whatever lies between them and the index is the name.
    const [total, free, used] = rest.splice(-3);
    if (index === undefined || !/^\d+$/.test(index) || used === undefined || rest.length === 0) {
      return { ok: false, reason: `unexpected output line ${JSON.stringify(line)}` };
    }
    rows.push({ index: Number(index), name: rest.join(', '), totalMiB: mib(total), freeMiB: mib(free), usedMiB: mib(used) });
  }
  return { ok: true, value: rows };
}

export async function probeCuda(run: CommandRunner, platform: NodeJS.Platform): Promise<DetectResult> {
  const tried: string[] = [];
  for (const file of nvidiaSmiCommands(platform)) {
    const result = await run(file, QUERY);
    if (!result.ok) {
      tried.push(triedLine(file, result));
      continue;
    }
    const rows = parseNvidiaSmi(result.stdout);
    if (!rows.ok) {
      tried.push(`${file}: ${rows.reason}`);
      continue;
    }
    return { found: true, detection: { backend: 'cuda', source: file, devices: rows.value.map(toDevice) } };
  }
  return { found: false, tried };
}

/** Reads VRAM through the same nvidia-smi that found the GPUs; null when it fails. */
export async function sampleCuda(run: CommandRunner, source: string): Promise<VramSample[] | null> {
  const result = await run(source, QUERY);
  const rows = result.ok ? parseNvidiaSmi(result.stdout) : null;
  if (!rows?.ok) return null;
  return rows.value.map((row) => ({
    index: row.index,
    totalBytes: totalBytes(row),
    usedBytes: bytes(row.usedMiB),
    freeBytes: bytes(row.freeMiB),
  }));
}

// Windows drivers install nvidia-smi in System32 (DCH drivers) or NVSMI (older ones), not always on PATH.
function nvidiaSmiCommands(platform: NodeJS.Platform): string[] {
  if (platform !== 'win32') return ['nvidia-smi'];
  return [
    'nvidia-smi',
    path.win32.join(process.env.SystemRoot ?? 'C:\\Windows', 'System32', 'nvidia-smi.exe'),
    path.win32.join(process.env.ProgramFiles ?? 'C:\\Program Files', 'NVIDIA Corporation', 'NVSMI', 'nvidia-smi.exe'),
  ];
}

function toDevice(row: NvidiaSmiRow): GpuDevice {
  return {
    index: row.index,
    name: row.name,
    totalBytes: totalBytes(row),
    freeBytes: bytes(row.freeMiB),
    unifiedMemory: row.totalMiB === null,
  };
}

// GPUs that share the host's memory, such as the GB10, report no memory.total: their memory is the system's RAM.
function totalBytes(row: NvidiaSmiRow): number {
  return row.totalMiB === null ? os.totalmem() : row.totalMiB * MIB;
}

function bytes(mebibytes: number | null): number | null {
  return mebibytes === null ? null : mebibytes * MIB;
}

function mib(field: string | undefined): number | null {
  return field !== undefined && /^\d+$/.test(field) ? Number(field) : null;
}
