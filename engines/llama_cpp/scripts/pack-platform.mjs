// The pack scripts of a platform package (engines/llama_cpp/npm/<platform>/), run in its folder:
//   copy <backend>  (prepack)  the plugin folder this platform's build made, engines/llama_cpp/<backend>/, into
//                              the package as engines/llama_cpp/<backend>/: the layout the node reads from an
//                              installed engine package;
//   clean           (postpack) removes that copy again.
import { cpSync, existsSync, readFileSync, rmSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const [command, backend] = process.argv.slice(2);
rmSync('engines', { recursive: true, force: true });
if (command === 'copy') {
  const built = join(dirname(dirname(fileURLToPath(import.meta.url))), backend);
  const { name, os, cpu } = JSON.parse(readFileSync('package.json', 'utf8'));
  if (!existsSync(join(built, 'manifest.json'))) {
    console.error(`${name}: engines/llama_cpp/${backend}/ is not built; run pnpm build on ${os.join('/')}-${cpu.join('/')} first`);
    process.exit(1);
  }
  cpSync(built, join('engines', 'llama_cpp', backend), { recursive: true });
}
