import { execFile } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdir, readFile, rename, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';

const run = promisify(execFile);

const packageRoot = fileURLToPath(new URL('../..', import.meta.url));
const includeDir = join(packageRoot, 'include');
const sourceDir = join(packageRoot, 'test-plugins');

/** The C test plugins in test-plugins/; each file's opening comment says what it does and its -D options. */
export type TestPluginName =
  | 'minimal'
  | 'echo'
  | 'abi2'
  | 'missing_symbol'
  | 'bad_info'
  | 'failing'
  | 'unsafe'
  | 'garbage'
  | 'legacy'
  | 'faulty';

export interface BuildTestPluginOptions {
  /** -D definitions: `{ ECHO_TOKEN_DELAY_US: 20000 }`, `{ ENGINE_ID: 'other' }`, `{ NULL_ID: 1 }`. */
  defines?: Record<string, string | number>;
  /** The folder of the engine_api.h to compile against; default today's. A past one (test-plugins/abi-0.1.0/) builds a plugin as its authors built it then. */
  includeDir?: string;
}

/** The file name the platform gives a shared library: libx.so, libx.dylib, x.dll. */
export function libraryFileName(name: string): string {
  if (process.platform === 'win32') return `${name}.dll`;
  return process.platform === 'darwin' ? `lib${name}.dylib` : `lib${name}.so`;
}

/**
 * Compiles test-plugins/<name>.c with the system C compiler (`$CC` or `cc`; on Windows `cl`, else `gcc`)
 * and returns the library's path. Builds are cached under the OS temp folder, keyed by a hash of the
 * sources, the header and the options, so a second build is free; parallel builds of one key each write
 * their own file and rename it into place, so test files running at once do not race.
 */
export async function buildTestPlugin(name: TestPluginName, options: BuildTestPluginOptions = {}): Promise<string> {
  const source = join(sourceDir, `${name}.c`);
  const defines = Object.entries(options.defines ?? {})
    .map(([key, value]) => `${key}=${value}`)
    .sort();
  const hash = createHash('sha256');
  const header = options.includeDir ?? includeDir;
  for (const file of [source, join(sourceDir, 'test_plugin.h'), join(header, 'engine_api.h')]) hash.update(await readFile(file));
  hash.update(JSON.stringify([defines, process.platform, process.arch]));
  const dir = join(tmpdir(), 'llm-node-test-plugins', `${name}-${hash.digest('hex').slice(0, 16)}`);
  const library = join(dir, libraryFileName(name));
  if (existsSync(library)) return library;

  const work = join(dir, `.build-${process.pid}-${randomBytes(4).toString('hex')}`);
  await mkdir(work, { recursive: true });
  try {
    const built = join(work, libraryFileName(name));
    await compile(source, built, defines, header, work);
    await rename(built, library).catch((error: unknown) => {
      if (!existsSync(library)) throw error; // Windows refuses to replace a DLL in use: the other build won
    });
  } finally {
    await rm(work, { recursive: true, force: true });
  }
  return library;
}

async function compile(source: string, output: string, defines: string[], header: string, cwd: string): Promise<void> {
  const gccStyle = (compiler: string) =>
    run(
      compiler,
      [
        '-shared',
        ...(process.platform === 'win32' ? [] : ['-fPIC', '-pthread']),
        '-O2',
        `-I${header}`,
        `-I${sourceDir}`,
        ...defines.map((d) => `-D${d}`),
        '-o',
        output,
        source,
      ],
      { cwd },
    );
  try {
    if (process.platform !== 'win32') {
      await gccStyle(process.env.CC ?? 'cc');
      return;
    }
    try {
      // cl writes its .obj, .lib and .exp into the working folder.
      await run(
        'cl',
        ['/nologo', '/LD', '/O2', `/I${header}`, `/I${sourceDir}`, ...defines.map((d) => `/D${d}`), source, `/Fe:${output}`],
        { cwd },
      );
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'ENOENT') throw error;
      await gccStyle('gcc');
    }
  } catch (error) {
    const { stderr, stdout, message } = error as { stderr?: string; stdout?: string; message: string };
    throw new Error(`could not compile ${source}: ${stderr || stdout || message}`);
  }
}
