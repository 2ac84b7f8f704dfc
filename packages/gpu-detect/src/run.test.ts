import { describe, expect, it } from 'vitest';
import { runCommand } from './run.js';

describe('runCommand', () => {
  it('resolves with what the program printed', async () => {
    expect(await runCommand(process.execPath, ['-e', 'process.stdout.write("0, GPU, 1, 1, 0")'])).toEqual({
      ok: true,
      stdout: '0, GPU, 1, 1, 0',
    });
  });

  it('says a program is not found on PATH rather than throwing', async () => {
    expect(await runCommand('llm-node-no-such-tool', [])).toEqual({ ok: false, reason: 'not found on PATH' });
  });

  it('says a program given by path is not found', async () => {
    expect(await runCommand('/nonexistent/nvidia-smi', [])).toEqual({ ok: false, reason: 'not found' });
  });

  it('gives the exit code and the first line the program said', async () => {
    const script = 'console.error("\\nNVIDIA-SMI has failed because it couldn\'t communicate with the NVIDIA driver."); process.exit(9)';
    expect(await runCommand(process.execPath, ['-e', script])).toEqual({
      ok: false,
      reason: "exited with code 9: NVIDIA-SMI has failed because it couldn't communicate with the NVIDIA driver.",
    });
  });
});
