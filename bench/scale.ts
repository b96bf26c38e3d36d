// npm run bench:scale: photo-like datasets of N images (6 classes, `edgetune demo-data`), each
// trained in a fresh process with alpha 0.35 at 160 for one frozen and one fine-tuning epoch with
// the default flags (so the default cache budget). Prints wall time, images/s, peak RSS and what
// went to the disk cache per N.
//
//   npm run bench:scale                              # N = 1000, 5000, 20000
//   npm run bench:scale -- --sizes 1000,5000 --extra="--cache-budget 1G"
//   npm run bench:scale -- --data /tmp/sets          # generate into /tmp/sets/<N> once, reuse after
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { createInterface } from 'node:readline';
import { parseArgs } from 'node:util';

const repo = path.resolve(import.meta.dirname, '..');
const shared = process.env.EDGETUNE_SHARED_DIR ?? path.resolve(repo, '../shared');
const weights = path.join(shared, 'weights/mobilenet_v2_0.35_224_imagenet/model.json');

const { values } = parseArgs({
  options: {
    sizes: { type: 'string', default: '1000,5000,20000' },
    classes: { type: 'string', default: '6' },
    /** Pixel size of the generated photos (they are resized to 160 for training). */
    'photo-size': { type: 'string', default: '192' },
    extra: { type: 'string', default: '' },
    keep: { type: 'boolean', default: false },
    /** Keep the generated datasets in <data>/<N> and reuse them (generating 20,000 photos takes minutes). */
    data: { type: 'string' },
  },
});
if (!existsSync(weights)) {
  console.error(`bench:scale needs the shared alpha 0.35 weights: ${weights}`);
  process.exit(2);
}
const classes = Number(values.classes);
const sizes = values.sizes!.split(',').map(Number);
const cli = (args: string[]) => [process.execPath, ['--import', 'tsx', path.join(repo, 'cli/main.ts'), ...args]] as const;

interface Result {
  n: number;
  wall: number;
  trainSeconds: number;
  peakRssMiB: number;
  cache: string;
}

async function exec(args: string[], onLine?: (line: string) => void): Promise<void> {
  const [cmd, argv] = cli(args);
  const child = spawn(cmd, argv, { cwd: repo, stdio: ['ignore', 'pipe', 'inherit'] });
  createInterface({ input: child.stdout }).on('line', (l) => onLine?.(l));
  const code = await new Promise<number | null>((r) => child.on('exit', r));
  if (code !== 0) throw new Error(`edgetune ${args[0]}: exit ${code}`);
}

async function runOnce(n: number): Promise<Result> {
  const dir = await mkdtemp(path.join(os.tmpdir(), `bench-scale-${n}-`));
  const data = values.data ? path.join(path.resolve(values.data), String(n)) : path.join(dir, 'data');
  const perClass = Math.ceil(n / classes);
  if (values.data && existsSync(data)) {
    console.error(`  N=${n}: reusing ${data}`);
  } else {
    const tg = performance.now();
    await exec([
      'demo-data',
      data,
      '--classes',
      String(classes),
      '--per-class',
      String(perClass),
      '--size',
      values['photo-size']!,
      '--seed',
      '1',
    ]);
    console.error(`  N=${n}: generated ${perClass * classes} photos in ${((performance.now() - tg) / 1000).toFixed(0)} s`);
  }
  const args = [
    'train',
    data,
    '--out',
    path.join(dir, 'model'),
    '--base-weights',
    weights,
    '--alpha',
    '0.35',
    '--image-size',
    '160',
    '--epochs',
    '1',
    '--fine-tune-epochs',
    '1',
    '--json',
    ...values.extra!.split(' ').filter(Boolean),
  ];
  let peakRssMiB = 0;
  let trainSeconds = 0;
  let cache = '';
  const t = performance.now();
  try {
    await exec(args, (line) => {
      try {
        const e = JSON.parse(line);
        if (e.type === 'done') {
          peakRssMiB = e.peakRssMiB;
          trainSeconds = e.seconds;
        }
        if (e.type === 'info' && String(e.message).startsWith('cache: ')) cache = String(e.message).slice(7);
        if (e.type === 'warning' || e.type === 'error') console.error(`  ${e.type}: ${e.message}`);
      } catch {
        // not an event
      }
    });
  } finally {
    if (!values.keep) await rm(dir, { recursive: true, force: true });
  }
  return { n: perClass * classes, wall: (performance.now() - t) / 1000, trainSeconds, peakRssMiB, cache };
}

console.log(`bench:scale — alpha 0.35 at 160, 1 frozen + 1 fine-tune epoch, ${classes} classes, ${os.availableParallelism()} cores`);
console.log('      N   wall s   images/s  peak RSS MiB  cache');
const results: Result[] = [];
for (const n of sizes) {
  const r = await runOnce(n);
  results.push(r);
  console.log(
    `${String(r.n).padStart(7)} ${r.wall.toFixed(1).padStart(8)} ${(r.n / r.wall).toFixed(1).padStart(10)} ${r.peakRssMiB.toFixed(0).padStart(13)}  ${r.cache}`,
  );
}
if (results.length > 1) {
  const [a, b] = [results[0], results.at(-1)!];
  console.log(
    `largest vs smallest: peak RSS x${(b.peakRssMiB / a.peakRssMiB).toFixed(2)}, wall time per image x${(b.wall / b.n / (a.wall / a.n)).toFixed(2)} (1.00 = linear)`,
  );
}
