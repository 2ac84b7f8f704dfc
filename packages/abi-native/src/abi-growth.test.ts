import { execFile } from 'node:child_process';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { EngineHost } from './engine-host.js';
import { buildTestPlugin } from './testing/index.js';

// The header's promise to plugin authors: within ABI 1 it only grows. test-plugins/abi-0.1.0/engine_api.h is
// the header as @llm-node/abi-native 0.1.0 published it; plugins compiled against it must keep working.

const packageRoot = fileURLToPath(new URL('..', import.meta.url));
const pastHeader = join(packageRoot, 'test-plugins', 'abi-0.1.0');
const todaysHeader = join(packageRoot, 'include');
const run = promisify(execFile);

let work: string;
beforeAll(async () => {
  work = await mkdtemp(join(tmpdir(), 'abi-growth-'));
});
afterAll(() => rm(work, { recursive: true, force: true }));

/** Each struct's fields and each constant of a header, as its compiled offsets and values. */
async function layout(includeDir: string, names: { structs: Map<string, string[]>; constants: string[] }): Promise<string[]> {
  const lines = [
    '#include <stddef.h>',
    '#include <stdio.h>',
    '#include "engine_api.h"',
    'int main(void) {',
    ...[...names.structs].flatMap(([struct, fields]) => [
      `printf("sizeof ${struct} %zu\\n", sizeof(${struct}));`,
      ...fields.map((field) => `printf("${struct}.${field} %zu\\n", offsetof(${struct}, ${field}));`),
    ]),
    ...names.constants.map((constant) => `printf("${constant} %llu\\n", (unsigned long long)(${constant}));`),
    'return 0; }',
  ];
  const source = join(work, 'layout.c');
  const program = join(work, `layout-${includeDir === pastHeader ? 'past' : 'today'}`);
  await writeFile(source, lines.join('\n'));
  await run(process.env.CC ?? 'cc', [`-I${includeDir}`, '-o', program, source]);
  return (await run(program)).stdout.trim().split('\n');
}

/** The structs (with their fields) and the constants a header declares. */
function declarations(header: string): { structs: Map<string, string[]>; constants: string[] } {
  const code = header.replace(/\/\*[\s\S]*?\*\//g, '');
  const structs = new Map<string, string[]>();
  for (const [, name, body] of code.matchAll(/typedef struct (\w+) \{([\s\S]*?)\} \1;/g)) {
    structs.set(
      name!,
      [...body!.matchAll(/(\w+)\s*;/g)].map((m) => m[1]!),
    );
  }
  const constants = [...code.matchAll(/^#define ((?:ENGINE|ERR)_\w+) /gm), ...code.matchAll(/^\s+((?:ERR|ENGINE_FINISH)_\w+) = /gm)].map(
    (m) => m[1]!,
  );
  return { structs, constants };
}

describe.skipIf(process.platform === 'win32')('ABI 1 as it grows', () => {
  it('keeps every field of the 0.1.0 header at its offset and every constant at its value; structs only grow', async () => {
    const past = declarations(await readFile(join(pastHeader, 'engine_api.h'), 'utf8'));
    expect(past.structs.get('EngineGenerateParams')).toContain('n_stop');
    const before = await layout(pastHeader, past);
    const after = await layout(todaysHeader, past);
    const sizes = (lines: string[]) => lines.filter((l) => l.startsWith('sizeof'));
    expect(after.filter((l) => !l.startsWith('sizeof'))).toEqual(before.filter((l) => !l.startsWith('sizeof')));
    for (const [i, line] of sizes(before).entries()) {
      expect(Number(sizes(after)[i]!.split(' ')[2]), line).toBeGreaterThanOrEqual(Number(line.split(' ')[2]));
    }
  });

  it('loads and serves the echo plugin compiled against the 0.1.0 header', async () => {
    const plugin = await buildTestPlugin('echo', { includeDir: pastHeader, defines: { ECHO_AS_OF_0_1_0: 1 } });
    const host = await EngineHost.start(plugin, { expectedId: 'echo' });
    try {
      await host.init({ gpuBackend: 'cpu', pluginDir: '/' });
      const heard: unknown[] = [];
      await host.loadModel('m', { path: plugin, format: 'gguf' }, (progress) => heard.push(progress));
      expect(heard).toEqual([]); // it knows nothing of load progress, and is not asked for any
      expect(host.capabilities).not.toContain('json_schema');
      let text = '';
      for await (const chunk of host.generate({ modelId: 'm', prompt: 'Hello big world' })) text += chunk.text;
      expect(text).toBe('Hello big world');
    } finally {
      await host.close();
    }
  });
});
