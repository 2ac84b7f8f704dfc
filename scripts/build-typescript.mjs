// A package's TypeScript build: the JavaScript and source maps of the files its tsconfig.build.json names, each
// file on its own. Every package's code is written to compile file by file (`verbatimModuleSyntax`,
// `isolatedModules`), so nothing else needs to be read: `tsc` would resolve and parse every type a package
// touches (Node's, express's, zod's…) to emit the same JavaScript, 2–3 s a package, a large part of a first
// `pnpm start` on two cores. Types are checked by `pnpm lint`; the workspace reads them from the sources (the
// `@llm-node/source` export condition, tsconfig.base.json), and a package's declarations are written when it is
// packed (`prepack`: `tsc -p tsconfig.build.json`).
import { createRequire } from 'node:module';
import { join } from 'node:path';

// Through require: an ESM import of TypeScript's 9 MB CommonJS bundle first scans it for export names (0.4 s).
const ts = createRequire(import.meta.url)('typescript');

const host = { getCanonicalFileName: (f) => f, getCurrentDirectory: () => process.cwd(), getNewLine: () => '\n' };
function fail(diagnostics) {
  console.error(ts.formatDiagnostics(diagnostics, host));
  process.exit(1);
}

const config = ts.getParsedCommandLineOfConfigFile(join(process.cwd(), 'tsconfig.build.json'), undefined, {
  ...ts.sys,
  onUnRecoverableConfigFileDiagnostic: (diagnostic) => fail([diagnostic]),
});
if (config.errors.length > 0) fail(config.errors);

const program = ts.createProgram(config.fileNames, {
  ...config.options,
  // Every package is "type": "module": its files are ES modules, which NodeNext would decide from package.json.
  module: ts.ModuleKind.ESNext,
  moduleResolution: ts.ModuleResolutionKind.Bundler,
  isolatedModules: true,
  noResolve: true,
  noLib: true,
  types: [],
  noCheck: true,
  declaration: false,
  declarationMap: false,
});
const { diagnostics } = program.emit();
const problems = [...program.getSyntacticDiagnostics(), ...diagnostics];
if (problems.length > 0) fail(problems);
