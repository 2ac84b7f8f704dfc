import { readFileSync } from 'node:fs';
import type { CommandResult, CommandRunner } from '../types.js';

export interface FakeRunner extends CommandRunner {
  /** The programs run, in order. */
  calls: string[];
}

/**
 * A runner that answers from recorded outputs. Each key is a word of the command line (for PowerShell, of the
 * decoded script): the first key the command line contains gives the answer; other commands are "not found".
 */
export function fakeRunner(answers: Record<string, string | CommandResult>): FakeRunner {
  const calls: string[] = [];
  const run = async (file: string, args: readonly string[]): Promise<CommandResult> => {
    calls.push(file);
    const line = [file, ...args.map(decodeScript)].join(' ');
    const key = Object.keys(answers).find((word) => line.includes(word));
    const answer = key === undefined ? undefined : answers[key];
    if (answer === undefined) return { ok: false, reason: /[\\/]/.test(file) ? 'not found' : 'not found on PATH' };
    return typeof answer === 'string' ? { ok: true, stdout: answer } : answer;
  };
  return Object.assign(run, { calls });
}

export function fixture(name: string): string {
  return readFileSync(new URL(`../../fixtures/${name}`, import.meta.url), 'utf8');
}

// PowerShell scripts travel base64-encoded (UTF-16LE) after -EncodedCommand.
function decodeScript(arg: string): string {
  return /^[A-Za-z0-9+/]{40,}={0,2}$/.test(arg) ? Buffer.from(arg, 'base64').toString('utf16le') : arg;
}
