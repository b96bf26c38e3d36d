// `edgetune train` start-up: wall time from spawning the CLI to its first stage event ('decoding'),
// when it has loaded tfjs, sharp and the training modules and starts on the photos (the process is
// killed there). Median of N starts; with --compare <checkout>, that checkout's CLI starts
// alternately with this one (same photos, same machine state).
//   npm run bench:cli-start [-- --runs 8 --compare /path/to/other/checkout]
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';

const repo = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const { values } = parseArgs({ options: { runs: { type: 'string', default: '8' }, compare: { type: 'string' } } });
const data = path.resolve(repo, '../shared/datasets/alpaca');
if (!existsSync(data)) {
  console.log(`bench:cli-start: ${data} not found (the alpaca photos in ../shared): nothing to start on`);
  process.exit(0);
}
const out = mkdtempSync(path.join(os.tmpdir(), 'bench-cli-start-'));
const checkouts = [repo, ...(values.compare ? [path.resolve(values.compare)] : [])];

/** Milliseconds from spawn to the 'decoding' stage of one start. */
const once = (dir) =>
  new Promise((resolve, reject) => {
    const t = performance.now();
    const child = spawn(process.execPath, ['bin/edgetune.mjs', 'train', data, '--out', out, '--json'], { cwd: dir });
    let seen = false;
    createInterface({ input: child.stdout }).on('line', (l) => {
      if (seen || !l.includes('"stage"') || !l.includes('decoding')) return;
      seen = true;
      resolve(performance.now() - t);
      child.kill('SIGKILL');
    });
    child.on('exit', (code) => {
      if (!seen) reject(new Error(`${dir}: the CLI exited (${code}) before its first stage`));
    });
  });

try {
  for (const dir of checkouts) await once(dir); // builds dist/ if the sources changed
  const times = checkouts.map(() => []);
  for (let i = 0; i < Number(values.runs); i++) for (const [k, dir] of checkouts.entries()) times[k].push(await once(dir));
  console.log(`machine: ${os.cpus()[0]?.model} (${os.cpus().length} cores); load average ${os.loadavg()[0].toFixed(1)}`);
  for (const [k, dir] of checkouts.entries()) {
    const s = times[k].sort((a, b) => a - b);
    console.log(
      `${dir}: spawn to 'decoding' median ${s[Math.floor(s.length / 2)].toFixed(0)} ms (min ${s[0].toFixed(0)}, max ${s.at(-1).toFixed(0)}, ${s.length} starts)`,
    );
  }
} finally {
  rmSync(out, { recursive: true, force: true });
}
