import { createRequire } from 'node:module';
import { ENGINE_ABI_VERSION } from '@llm-node/abi-native';

// package.json sits one folder above both src/ and dist/, in the repo and in the published package.
const { version } = createRequire(import.meta.url)('../package.json') as { version: string };

/** `llm-node 0.1.0 (engine ABI 1)`: the host's version and the plugin ABI it loads. */
export function versionLine(): string {
  return `llm-node ${version} (engine ABI ${ENGINE_ABI_VERSION})`;
}
