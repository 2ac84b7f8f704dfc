import type { GpuBackend } from '@llm-node/gpu-detect';

export type ModelFormat = 'gguf' | 'safetensors' | 'onnx';

export type Modality = 'completion' | 'embedding';

/** A valid manifest.json, field names as in the file; fields it does not know are left out. */
export interface EngineManifest {
  id: string;
  version: string;
  abi_version: string;
  gpu_backend: GpuBackend;
  architectures: string[];
  formats: ModelFormat[];
  binary: string;
  /** Absent means completion only. */
  modalities?: Modality[];
  supports_vision?: boolean;
  license?: string;
}

/** Every error and warning is one line that starts with the file's path. */
export type ManifestResult =
  | { ok: true; manifest: EngineManifest; warnings: string[] }
  | { ok: false; errors: string[]; warnings: string[] };
