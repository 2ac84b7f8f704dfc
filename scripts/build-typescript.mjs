// A package's TypeScript build: the JavaScript and source maps of the files its tsconfig.build.json names, each
// file on its own. Every package's code is written to compile file by file (`verbatimModuleSyntax`,
// `isolatedModules`), so nothing else needs to be read: `tsc` would resolve and parse every type a package
// touches (Node's, express's, zod's…) to emit the same JavaScript, 2–3 s a package, and even TypeScript's own
// emitter file by file takes a second a package, mostly loading TypeScript. Oxc's transformer strips the types
// in about 0.1 s a package, which a first `pnpm start` on two cores feels. Types are checked by `pnpm lint`; the
// workspace reads them from the sources (the `@llm-node/source` export condition, tsconfig.base.json), and a
// package's declarations are written when it is packed (`prepack`: `tsc -p tsconfig.build.json`).
import { mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { basename, dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { createFilesMatcher, parseTsconfig } from 'get-tsconfig';
import { transformSync } from 'oxc-transform';

/** Builds the package in `packageDir`; false when a file could not be compiled (its errors are printed). */
export function buildTypeScript(packageDir) {
  const configPath = resolve(packageDir, 'tsconfig.build.json');
  const config = parseTsconfig(configPath);
  const includes = createFilesMatcher({ path: configPath, config });
  const { rootDir, outDir, target, sourceMap } = config.compilerOptions;
  const sourceRoot = resolve(dirname(configPath), rootDir);
  const outputRoot = resolve(dirname(configPath), outDir);

  let failed = false;
  for (const entry of readdirSync(sourceRoot, { recursive: true })) {
    const source = join(sourceRoot, entry);
    if (!source.endsWith('.ts') || source.endsWith('.d.ts') || !includes(source)) continue;
    const output = join(outputRoot, entry).replace(/\.ts$/, '.js');
    // The map names the source as seen from the output, as tsc writes it.
    const sourceFromOutput = relative(dirname(output), source).split('\\').join('/');
    const result = transformSync(sourceFromOutput, readFileSync(source, 'utf8'), {
      lang: 'ts',
      sourceType: 'module',
      target,
      sourcemap: sourceMap,
      // As `verbatimModuleSyntax` has it: an import without `type` stays, used or not.
      typescript: { onlyRemoveTypeImports: true },
    });
    if (result.errors.length > 0) {
      for (const error of result.errors) console.error(`${relative(process.cwd(), source)}: ${error.codeframe ?? error.message}`);
      failed = true;
      continue;
    }
    mkdirSync(dirname(output), { recursive: true });
    if (result.map) {
      // Without the sources' text, as tsc writes maps when `inlineSources` is off.
      const { sourcesContent, ...map } = result.map;
      writeFileSync(`${output}.map`, JSON.stringify({ ...map, file: basename(output) }));
      writeFileSync(output, `${result.code}//# sourceMappingURL=${basename(output)}.map\n`);
    } else {
      writeFileSync(output, result.code);
    }
  }
  return !failed;
}

// `node build-typescript.mjs` in a package's folder: its `build` script.
if (process.argv[1] === fileURLToPath(import.meta.url) && !buildTypeScript(process.cwd())) process.exit(1);
