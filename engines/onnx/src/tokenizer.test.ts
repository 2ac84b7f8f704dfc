// The plugin's tokenizer (src/native/tokenizer.cpp) against llama.cpp's reference tokenizations of its Llama 3
// vocabulary: the texts of models/ggml-vocab-llama-bpe.gguf.inp and the ids of the .out beside it (read from
// the llama.cpp source's git, where @llm-node/engine-llama-cpp's build leaves the .inp only), tokenized from the
// tokenizer.json the model maker writes for that vocabulary.
import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { builtPluginDir, ENGINE_DIR } from './built-plugin.js';
import { LLAMA3_VOCABULARY, makeOnnxModel } from './make-model.js';

const run = promisify(execFile);
const buildDir = join(ENGINE_DIR, 'build', 'cmake-cpu');
const binary = join(buildDir, process.platform === 'win32' ? 'onnx_native_tests.exe' : 'onnx_native_tests');
// Built by the test in the plugin's CMake build tree (the plugin's build leaves it out).
const built = builtPluginDir() !== undefined && existsSync(join(buildDir, 'CMakeCache.txt'));
if (!built && process.env.CI) throw new Error(`${buildDir} was not configured by the plugin's build`);

let workDir: string;

beforeAll(async () => {
  if (!built) return;
  workDir = await mkdtemp(join(tmpdir(), 'onnx-tokenizer-'));
  await makeOnnxModel(workDir, { layers: 1 });
  const { stdout } = await run('git', ['-C', dirname(dirname(LLAMA3_VOCABULARY)), 'show', 'HEAD:models/ggml-vocab-llama-bpe.gguf.out'], {
    maxBuffer: 1 << 24,
  });
  await writeFile(join(workDir, 'expected.out'), stdout);
  await run('cmake', ['--build', buildDir, '--config', 'Release', '--parallel', '--target', 'onnx_native_tests']);
}, 300_000);

afterAll(async () => {
  if (workDir) await rm(workDir, { recursive: true, force: true });
});

describe.skipIf(!built)("the plugin's tokenizer", () => {
  it("tokenizes every text of llama.cpp's Llama 3 corpus as its reference does", async () => {
    const { stdout } = await run(binary, [join(workDir, 'tokenizer.json'), `${LLAMA3_VOCABULARY}.inp`, join(workDir, 'expected.out')]);
    expect(stdout).toMatch(/^(\d+) texts, 0 mismatched/m);
    expect(Number(/^(\d+) texts/m.exec(stdout)![1])).toBeGreaterThan(40);
  });
});
