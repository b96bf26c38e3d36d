// npm run bench:train: full alpaca runs in fresh processes, as a user runs them.
// Prints, per run: wall time, CPU seconds over all threads (train() to the export; a loaded machine
// inflates wall time far more than CPU time), time per phase, boundary forward images/s, peak RSS and both accuracies,
// then the mean per configuration; and the naive (uncached, model.fit) pipeline's extrapolated time.
//
//   npm run bench:train                      # default flags, alpha 1.0 and 0.35, seeds 42 7 123; --recipe keras; naive
//   npm run bench:train -- --only default-1.0 --seeds 42
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, readFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { createInterface } from 'node:readline';
import { parseArgs } from 'node:util';
import { TRAINING_NODE_FLAGS } from '../cli/node-flags.js';
import { type Manifest, ManifestSchema } from '../core/manifest.js';
import { machineLine } from './machine.js';

console.log(machineLine());

const repo = path.resolve(import.meta.dirname, '..');
const shared = process.env.EDGETUNE_SHARED_DIR ?? path.resolve(repo, '../shared');
const data = path.join(shared, 'datasets/alpaca');
const weights = (alpha: string) => path.join(shared, `weights/mobilenet_v2_${alpha}_224_imagenet/model.json`);

const { values } = parseArgs({
  options: {
    seeds: { type: 'string', default: '42,7,123' },
    only: { type: 'string' },
    'skip-naive': { type: 'boolean', default: false },
    /** Extra training flags for every run, e.g. --extra="--augment-frozen --frozen-views 4". */
    extra: { type: 'string', default: '' },
  },
});
if (!existsSync(data) || !existsSync(weights('1.0'))) {
  console.error(`bench:train needs ${data} and the shared weights in ${path.join(shared, 'weights')}`);
  process.exit(2);
}

const configs: Record<string, string[]> = {
  'default-1.0': ['--base-weights', weights('1.0')],
  'default-0.35': ['--base-weights', weights('0.35')],
  'keras-1.0': ['--base-weights', weights('1.0'), '--recipe', 'keras'],
  'keras-0.35': ['--base-weights', weights('0.35'), '--recipe', 'keras'],
};
const seeds = values.seeds!.split(',').map(Number);
const selected = values.only !== undefined ? values.only.split(',').filter(Boolean) : Object.keys(configs);
const unknown = selected.filter((c) => !configs[c]);
if (unknown.length) {
  console.error(
    `unknown config(s) ${unknown.join(', ')}; choose from ${Object.keys(configs).join(', ')} (--only '' runs only the naive pipeline)`,
  );
  process.exit(2);
}

interface Run {
  config: string;
  seed: number;
  wall: number;
  peakRssMiB: number;
  manifest: Manifest;
}

async function runOnce(config: string, seed: number): Promise<Run> {
  const out = await mkdtemp(path.join(os.tmpdir(), `bench-${config}-${seed}-`));
  const args = [
    ...TRAINING_NODE_FLAGS,
    path.join(repo, 'bin/edgetune.mjs'),
    'train',
    data,
    '--out',
    out,
    '--seed',
    String(seed),
    '--json',
    ...configs[config],
    ...values.extra!.split(' ').filter(Boolean),
  ];
  const t = performance.now();
  const child = spawn(process.execPath, args, { stdio: ['ignore', 'pipe', 'inherit'] });
  let peakRssMiB = 0;
  createInterface({ input: child.stdout }).on('line', (line) => {
    try {
      const e = JSON.parse(line);
      if (e.type === 'done') peakRssMiB = e.peakRssMiB;
      if (e.type === 'warning' || e.type === 'error') console.error(`  ${e.type}: ${e.message}`);
    } catch {
      // not an event
    }
  });
  const code = await new Promise<number | null>((r) => child.on('exit', r));
  if (code !== 0) throw new Error(`${config} seed ${seed}: exit ${code}`);
  const wall = (performance.now() - t) / 1000;
  const manifest = ManifestSchema.parse(JSON.parse(await readFile(path.join(out, 'manifest.json'), 'utf8')));
  return { config, seed, wall, peakRssMiB, manifest };
}

const f = (n: number | undefined, d = 1) => (n === undefined || Number.isNaN(n) ? '-' : n.toFixed(d));
const header =
  'config          seed   wall s   CPU s  decode  frozen  fine-tune  post  export  boundary img/s  peak RSS MiB  val acc frozen  val acc fine-tuned';
console.log(header);
const runs: Run[] = [];
for (const config of selected) {
  for (const seed of seeds) {
    const r = await runOnce(config, seed);
    runs.push(r);
    const t = r.manifest.timings;
    console.log(
      `${config.padEnd(15)} ${String(seed).padStart(4)} ${f(r.wall).padStart(8)} ${f(t.totalCpuSeconds).padStart(7)} ${f(t.decodeSeconds).padStart(7)} ${f(t.frozenSeconds).padStart(7)} ${f(t.fineTuneSeconds).padStart(10)} ${f(t.postTrainingSeconds).padStart(5)} ${f(t.exportSeconds).padStart(7)} ${f(t.boundaryImagesPerSecond).padStart(15)} ${f(r.peakRssMiB, 0).padStart(13)} ${f(r.manifest.metrics.frozen.valAccuracy, 4).padStart(15)} ${f(r.manifest.metrics.fineTuned?.valAccuracy, 4).padStart(19)}`,
    );
  }
  const mine = runs.filter((r) => r.config === config);
  const mean = (g: (r: Run) => number | undefined) => mine.reduce((a, r) => a + (g(r) ?? Number.NaN), 0) / mine.length;
  console.log(
    `${`${config} mean`.padEnd(20)} ${f(mean((r) => r.wall)).padStart(8)} ${f(mean((r) => r.manifest.timings.totalCpuSeconds)).padStart(7)} ${''.padStart(42)} ${f(mean((r) => r.manifest.timings.boundaryImagesPerSecond)).padStart(15)} ${f(Math.max(...mine.map((r) => r.peakRssMiB)), 0).padStart(13)} ${f(
      mean((r) => r.manifest.metrics.frozen.valAccuracy),
      4,
    ).padStart(15)} ${f(
      mean((r) => r.manifest.metrics.fineTuned?.valAccuracy),
      4,
    ).padStart(19)}`,
  );
}

if (!values['skip-naive']) {
  console.log('\nnaive pipeline (tfjs trainOnBatch on augmented batches, no cache; --recipe keras; one step per phase, extrapolated):');
  const naive = async (alpha: string, batch: number) => {
    const child = spawn(
      process.execPath,
      ['--import', 'tsx', path.join(repo, 'bench/naive-step.ts'), data, weights(alpha), '160', String(batch)],
      {
        stdio: ['ignore', 'pipe', 'ignore'],
      },
    );
    let line = '';
    child.stdout.on('data', (b) => {
      line += b;
    });
    const code = await new Promise<number | null>((r) => child.on('exit', r));
    return code === 0 ? JSON.parse(line.trim().split('\n').at(-1)!) : undefined;
  };
  for (const alpha of ['1.0', '0.35']) {
    let n = await naive(alpha, 32);
    if (!n) {
      // The WASM heap (4 GB at most) aborts on a whole-model step at batch 32: time batch 8, scale x4.
      console.log(`  alpha ${alpha}: a batch-32 step aborted the WASM heap; timing batch 8 and scaling to 32`);
      n = await naive(alpha, 8);
    }
    if (!n) {
      console.log(`  alpha ${alpha}: the naive run failed`);
      continue;
    }
    console.log(
      `  alpha ${alpha}: frozen step ${f(n.frozenStepSeconds, 2)} s, fine-tune step ${f(n.fineTuneStepSeconds, 2)} s (batch ${n.batch}), ${n.stepsPerEpoch} steps/epoch -> estimated ${f(n.estimatedTotalSeconds, 0)} s for 5+5 epochs (frozen ${f(n.estimatedFrozenSeconds, 0)} s, fine-tune ${f(n.estimatedFineTuneSeconds, 0)} s)${n.note ? `; ${n.note}` : ''}`,
    );
  }
}
