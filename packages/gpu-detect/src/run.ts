import { execFile, type ExecFileException } from 'node:child_process';
import type { CommandResult, CommandRunner } from './types.js';

// system_profiler and a cold PowerShell can each take several seconds on a busy machine.
const TIMEOUT_MS = 15_000;

/** The real runner: no shell, no console window on Windows, a time limit, failures as reasons. */
export const runCommand: CommandRunner = (file, args) =>
  new Promise((resolve) => {
    execFile(
      file,
      args,
      { timeout: TIMEOUT_MS, windowsHide: true, encoding: 'utf8', maxBuffer: 4 * 1024 * 1024 },
      (error, stdout, stderr) => {
        resolve(error ? { ok: false, reason: failureReason(file, error, `${stderr}\n${stdout}`) } : { ok: true, stdout });
      },
    );
  });

/** Makes a runner that throws or rejects (a caller's own) answer like one that failed, so probes never throw. */
export function neverThrowing(run: CommandRunner): CommandRunner {
  return async (file, args) => {
    try {
      return await run(file, args);
    } catch (error) {
      return { ok: false, reason: `failed: ${error instanceof Error ? error.message : String(error)}` };
    }
  };
}

/** One line per failed probe, as `DetectResult.tried` holds them. */
export function triedLine(file: string, result: Extract<CommandResult, { ok: false }>): string {
  return `${file}: ${result.reason}`;
}

function failureReason(file: string, error: ExecFileException, output: string): string {
  if (error.code === 'ENOENT') return /[\\/]/.test(file) ? 'not found' : 'not found on PATH';
  if (error.code === 'EACCES') return 'not executable (permission denied)';
  if (error.killed) return `gave no answer within ${TIMEOUT_MS / 1000} s`;
  const said = output
    .split(/\r?\n/)
    .map((line) => line.trim())
    .find((line) => line !== '');
  const status = typeof error.code === 'number' ? `exited with code ${error.code}` : `failed (${error.message})`;
  return said ? `${status}: ${said}` : status;
}
