// Opens a built plugin folder through the node's own binding and initialises it, as the node does: the library
// loads, its engine id matches the manifest, and engine_init finds ONNX Runtime beside it with the execution
// provider of the folder (DirectML's entry point for directml). Needs no GPU: no session is created.
// usage: node scripts/check-plugin.mjs <cpu|directml>
import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

import { openEngine } from '@llm-node/abi-native';

const backend = process.argv[2];
const pluginDir = join(dirname(dirname(fileURLToPath(import.meta.url))), backend ?? '');
const manifest = JSON.parse(readFileSync(join(pluginDir, 'manifest.json'), 'utf8'));
const engine = openEngine(join(pluginDir, manifest.binary), { expectedId: manifest.id });
try {
  await engine.init({ gpuBackend: manifest.gpu_backend, pluginDir });
  console.log(
    `engines/onnx/${backend}/: ${manifest.binary} ${engine.info.version} opens and initialises (${[...engine.capabilities].join(', ')})`,
  );
} finally {
  await engine.close();
}
