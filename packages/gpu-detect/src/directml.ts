import os from 'node:os';
import { isRecord, type Parsed } from './parsed.js';
import { triedLine } from './run.js';
import type { CommandRunner, DetectResult, GpuDetection, GpuDevice, VramSample } from './types.js';

const GIB = 2 ** 30;
const POWERSHELL = 'powershell.exe';

// Win32_VideoController lists the adapters that are present, but its AdapterRAM is a uint32 that stops at 4 GiB.
// Each adapter's driver key under the display class {4d36e968-...} holds the true size in
// HardwareInformation.qwMemorySize (older drivers: HardwareInformation.MemorySize, a DWORD or 4 raw bytes).
const ADAPTERS_SCRIPT = `
[Console]::OutputEncoding = [Text.Encoding]::UTF8
$adapters = foreach ($controller in Get-CimInstance Win32_VideoController) {
  $driver = (Get-ItemProperty -LiteralPath "HKLM:\\SYSTEM\\CurrentControlSet\\Enum\\$($controller.PNPDeviceID)" -ErrorAction SilentlyContinue).Driver
  $class = if ($driver) { Get-ItemProperty -LiteralPath "HKLM:\\SYSTEM\\CurrentControlSet\\Control\\Class\\$driver" -ErrorAction SilentlyContinue }
  [pscustomobject]@{
    Name = $controller.Name
    AdapterRAM = $controller.AdapterRAM
    QwMemorySize = $class.'HardwareInformation.qwMemorySize'
    MemorySize = $class.'HardwareInformation.MemorySize'
  }
}
ConvertTo-Json -InputObject @($adapters) -Compress
`;

// The performance-counter class behind Task Manager's GPU memory figures; unlike Get-Counter paths, its names
// are not translated on non-English Windows. Instances are named by adapter LUID, which nothing else here reports.
const USAGE_SCRIPT = `
[Console]::OutputEncoding = [Text.Encoding]::UTF8
$usage = Get-CimInstance Win32_PerfFormattedData_GPUPerformanceCounters_GPUAdapterMemory | Select-Object Name, DedicatedUsage, SharedUsage
ConvertTo-Json -InputObject @($usage) -Compress
`;

export interface WindowsAdapter {
  name: string;
  dedicatedBytes: number;
}

export interface AdapterUsage {
  dedicatedBytes: number;
  sharedBytes: number;
}

/** The hardware adapters of ADAPTERS_SCRIPT's output; software ones ("Microsoft Basic Render Driver") are left out. */
export function parseAdapterList(stdout: string): Parsed<WindowsAdapter[]> {
  const items = parseJsonList(stdout);
  if (!items.ok) return items;
  const adapters: WindowsAdapter[] = [];
  for (const item of items.value) {
    const name = typeof item.Name === 'string' ? item.Name.trim() : '';
    const dedicatedBytes = memorySize(item.QwMemorySize) ?? memorySize(item.MemorySize) ?? memorySize(item.AdapterRAM);
    // Microsoft's own adapters (Basic Render Driver, Basic Display Adapter, Remote Display Adapter) are software.
    if (name === '' || name.startsWith('Microsoft ') || dedicatedBytes === null) continue;
    adapters.push({ name, dedicatedBytes });
  }
  return adapters.length > 0 ? { ok: true, value: adapters } : { ok: false, reason: 'no hardware display adapter reported' };
}

export function parseAdapterUsage(stdout: string): Parsed<AdapterUsage[]> {
  const items = parseJsonList(stdout);
  if (!items.ok) return items;
  return {
    ok: true,
    value: items.value.map((item) => ({ dedicatedBytes: count(item.DedicatedUsage), sharedBytes: count(item.SharedUsage) })),
  };
}

export async function probeDirectml(run: CommandRunner, platform: NodeJS.Platform): Promise<DetectResult> {
  if (platform !== 'win32') return { found: false, tried: [`directml: needs Windows (this system is ${platform})`] };
  const result = await runScript(run, ADAPTERS_SCRIPT);
  if (!result.ok) return { found: false, tried: [triedLine(POWERSHELL, result)] };
  const adapters = parseAdapterList(result.stdout);
  if (!adapters.ok) return { found: false, tried: [`${POWERSHELL}: ${adapters.reason}`] };

  const devices = adapters.value.map((adapter, index): GpuDevice => {
    const unifiedMemory = adapter.dedicatedBytes < GIB;
    return {
      index,
      name: adapter.name,
      totalBytes: unifiedMemory ? adapter.dedicatedBytes + Math.floor(os.totalmem() / 2) : adapter.dedicatedBytes,
      freeBytes: null,
      unifiedMemory,
    };
  });
  const detection: GpuDetection = { backend: 'directml', source: POWERSHELL, devices };
  const samples = await sampleDirectml(run, detection);
  for (const device of devices) device.freeBytes = samples?.[device.index]?.freeBytes ?? null;
  return { found: true, detection };
}

/**
 * Usage counters are per adapter LUID, which cannot be tied to an adapter of the list without DXGI; with one
 * hardware adapter the busiest counter is its own, with several the figures stay unknown (null).
 */
export async function sampleDirectml(run: CommandRunner, detection: GpuDetection): Promise<VramSample[] | null> {
  const result = await runScript(run, USAGE_SCRIPT);
  const usage = result.ok ? parseAdapterUsage(result.stdout) : null;
  if (!usage?.ok) return null;
  const [only] = detection.devices;
  if (detection.devices.length !== 1 || only === undefined) {
    return detection.devices.map((device) => ({ index: device.index, totalBytes: device.totalBytes, usedBytes: null, freeBytes: null }));
  }
  // Integrated GPUs work mostly in shared memory; a discrete GPU's budget is its dedicated memory alone.
  const used = (counters: AdapterUsage) => counters.dedicatedBytes + (only.unifiedMemory ? counters.sharedBytes : 0);
  const usedBytes = Math.min(
    only.totalBytes,
    usage.value.reduce((most, counters) => Math.max(most, used(counters)), 0),
  );
  return [{ index: only.index, totalBytes: only.totalBytes, usedBytes, freeBytes: only.totalBytes - usedBytes }];
}

// -EncodedCommand takes the script as base64 UTF-16LE, which no quoting rule of cmd or PowerShell can mangle.
function runScript(run: CommandRunner, script: string) {
  const encoded = Buffer.from(script, 'utf16le').toString('base64');
  return run(POWERSHELL, ['-NoProfile', '-NonInteractive', '-EncodedCommand', encoded]);
}

// ConvertTo-Json writes one object without brackets when a list has a single item.
function parseJsonList(stdout: string): Parsed<Record<string, unknown>[]> {
  let value: unknown;
  try {
    value = JSON.parse(stdout);
  } catch {
    return { ok: false, reason: 'printed something other than JSON' };
  }
  return { ok: true, value: (Array.isArray(value) ? value : [value]).filter(isRecord) };
}

/** A registry or WMI memory size: a number, or REG_BINARY bytes (little-endian) as a JSON list. */
function memorySize(value: unknown): number | null {
  if (Array.isArray(value) && value.length > 0 && value.every((byte) => Number.isInteger(byte) && byte >= 0 && byte <= 255)) {
    return memorySize(value.reduceRight((sum: number, byte: number) => sum * 256 + byte, 0));
  }
  return typeof value === 'number' && Number.isSafeInteger(value) && value > 0 ? value : null;
}

function count(value: unknown): number {
  return typeof value === 'number' && Number.isFinite(value) && value > 0 ? value : 0;
}
