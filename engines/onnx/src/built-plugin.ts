// Where this package's build put the plugin folder of this platform's first backend (cpu on every platform it
// builds for), or undefined when it is not built. On CI it must be there: the callers' tests fail, not skip.
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

const BUILT_PLATFORMS = ['linux-x64', 'darwin-arm64', 'win32-x64'];

/** engines/onnx/: the engine's folder in an engines directory. */
export const ENGINE_DIR = fileURLToPath(new URL('..', import.meta.url));

export function builtPluginDir(): string | undefined {
  if (!BUILT_PLATFORMS.includes(`${process.platform}-${process.arch}`)) return undefined;
  const dir = join(ENGINE_DIR, 'cpu');
  if (existsSync(join(dir, 'manifest.json'))) return dir;
  if (process.env.CI) throw new Error('engines/onnx/cpu/ was not built');
  return undefined;
}
