// The pack scripts of a platform package (engines/llama_cpp/npm/<package>/), run in its folder:
//   copy <backend>  (prepack)  the plugin folder built for the package's platform into the package as
//                              engines/llama_cpp/<backend>/, the layout the node reads from an installed engine
//                              package: from platforms/<platform>/<backend>/ when the release gathered it there
//                              from that platform's CI job, else from this machine's build, <backend>/;
//   clean           (postpack) removes that copy again.
import { cpSync, existsSync, readFileSync, rmSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const [command, backend] = process.argv.slice(2);
rmSync('engines', { recursive: true, force: true });
if (command === 'copy') {
  const engineDir = dirname(dirname(fileURLToPath(import.meta.url)));
  // os and cpu sit in publishConfig (pnpm moves them to the top of the packed manifest) so that the workspace
  // does not warn, at every pnpm command, that four of these packages are for other platforms.
  const { name, publishConfig } = JSON.parse(readFileSync('package.json', 'utf8'));
  const { os, cpu } = publishConfig;
  const platform = `${os[0]}-${cpu[0]}`;
  const built = [
    join(engineDir, 'platforms', platform, backend),
    ...(platform === `${process.platform}-${process.arch}` ? [join(engineDir, backend)] : []),
  ].find((dir) => existsSync(join(dir, 'manifest.json')));
  if (built === undefined) {
    console.error(`${name}: no ${backend} plugin folder built for ${platform}; run pnpm build there first`);
    process.exit(1);
  }
  cpSync(built, join('engines', 'llama_cpp', backend), { recursive: true });
}
