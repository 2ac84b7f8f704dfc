// Detection
export { detectGpu, detectBackend } from './detect.js';
export { GPU_BACKENDS } from './types.js';
export type { GpuBackend, GpuDevice, GpuDetection, DetectResult, DetectOptions, CommandRunner, CommandResult } from './types.js';

// Resource monitor
export { createVramSampler } from './sampler.js';
export type { VramSample, VramSampler } from './types.js';

// Sizes (--vram-limit, LLM_NODE_VRAM_LIMIT, error messages)
export { parseSize, formatSize } from './size.js';
