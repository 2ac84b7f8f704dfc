import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { beforeAll, describe, expect, it } from 'vitest';

import { PLATFORM_RUNTIMES } from './prebuilt.js';

// The plugin's native tests (src/native/tests/): its own sources against llama.cpp and simple references, built
// here in the build tree of this platform's first plugin folder (the plugin's build leaves them out).
const backend = PLATFORM_RUNTIMES[`${process.platform}-${process.arch}`]?.[0]?.backend;
const packageDir = fileURLToPath(new URL('..', import.meta.url));
const buildDir = join(packageDir, 'build', `cmake-${backend}`);
const binary = join(buildDir, process.platform === 'win32' ? 'engine_native_tests.exe' : 'engine_native_tests');
const configured = backend !== undefined && existsSync(join(buildDir, 'CMakeCache.txt'));
if (!configured && backend !== undefined && process.env.CI) throw new Error(`${buildDir} was not configured by the plugin's build`);

describe.skipIf(!configured)("the plugin's native tests", () => {
  beforeAll(async () => {
    await promisify(execFile)('cmake', ['--build', buildDir, '--config', 'Release', '--parallel', '--target', 'engine_native_tests']);
  }, 300_000);

  it("pass: prompt tokenization equal to llama.cpp's, in linear time, cancellable; sampling as its reference distribution; stop strings cut right across any split", async () => {
    const { stdout } = await promisify(execFile)(binary, [join(packageDir, backend!), join(packageDir, 'build', 'llama.cpp')]);
    expect(stdout).toMatch(/\d+ checks, 0 failed/);
  });
});
