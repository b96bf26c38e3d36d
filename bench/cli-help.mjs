// `edgetune --help` start-up: wall time of the CLI against a bare `node -e 0` (the floor), median
// of N runs each; the CLI runs its compiled build (built first if the sources changed).
import { spawnSync } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const bin = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../bin/edgetune.mjs');
const runs = Number(process.argv[2] ?? 7);
const time = (args) => {
  const t = performance.now();
  const r = spawnSync(process.execPath, args, { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`${args.join(' ')} failed: ${r.stderr}`);
  return (performance.now() - t) / 1000;
};
const median = (xs) => xs.sort((a, b) => a - b)[Math.floor(xs.length / 2)];
time([bin, '--help']); // builds dist/ if needed
const help = [];
const node = [];
for (let i = 0; i < runs; i++) {
  help.push(time([bin, '--help']));
  node.push(time(['-e', '0']));
}
console.log(`edgetune --help: median ${median(help).toFixed(3)} s over ${runs} runs; node -e 0: ${median(node).toFixed(3)} s`);
