import { sampleCpu } from './cpu.js';
import { sampleCuda } from './cuda.js';
import { resolveOptions } from './detect.js';
import { sampleDirectml } from './directml.js';
import { sampleMetal } from './metal.js';
import type { DetectOptions, GpuDetection, VramSample, VramSampler } from './types.js';

/** Samples VRAM of the detected devices for the resource monitor, with the tool that detected them. */
export function createVramSampler(detection: GpuDetection, options: Pick<DetectOptions, 'run'> = {}): VramSampler {
  const { run } = resolveOptions(options);
  const read = async (): Promise<VramSample[] | null> => {
    switch (detection.backend) {
      case 'cuda':
        return sampleCuda(run, detection.source);
      case 'metal':
        return sampleMetal(run, detection);
      case 'directml':
        return sampleDirectml(run, detection);
      case 'cpu':
        return sampleCpu();
    }
  };
  let last: VramSample[] = [];
  return {
    async sample() {
      last = (await read()) ?? last;
      return last;
    },
  };
}
