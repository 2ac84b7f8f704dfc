import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';

import { PLATFORM_RUNTIMES } from './prebuilt.js';

// The plugin's native tests (src/native/tests/), built beside the plugin of this platform's first folder: its
// own sources against llama.cpp and simple references.
const backend = PLATFORM_RUNTIMES[`${process.platform}-${process.arch}`]?.[0]?.backend;
const packageDir = fileURLToPath(new URL('..', import.meta.url));
const binary = join(
  packageDir,
  'build',
  `cmake-${backend}`,
  process.platform === 'win32' ? 'engine_native_tests.exe' : 'engine_native_tests',
);
const built = backend !== undefined && existsSync(binary);
if (!built && backend !== undefined && process.env.CI) throw new Error(`${binary} was not built`);

describe.skipIf(!built)("the plugin's native tests", () => {
  it("pass: prompt tokenization equal to llama.cpp's, in linear time, cancellable; sampling as its reference distribution; stop strings cut right across any split", async () => {
    const { stdout } = await promisify(execFile)(binary, [join(packageDir, backend!), join(packageDir, 'build', 'llama.cpp')]);
    expect(stdout).toMatch(/\d+ checks, 0 failed/);
  });
});
