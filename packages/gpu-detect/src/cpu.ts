import os from 'node:os';
import type { GpuDetection, VramSample } from './types.js';

/** The development backend: one "device" whose memory is the system's RAM. */
export function detectCpu(): GpuDetection {
  const model = os.cpus()[0]?.model.trim();
  return {
    backend: 'cpu',
    source: 'os',
    devices: [{ index: 0, name: model || 'CPU', totalBytes: os.totalmem(), freeBytes: os.freemem(), unifiedMemory: true }],
  };
}

export function sampleCpu(): VramSample[] {
  const totalBytes = os.totalmem();
  const freeBytes = Math.min(totalBytes, os.freemem());
  return [{ index: 0, totalBytes, usedBytes: totalBytes - freeBytes, freeBytes }];
}
