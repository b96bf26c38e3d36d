// npm run bench:anchor: our training (the built CLI, as a user runs it) beside the same recipe in
// PyTorch written well (bench/anchor/train.py), on the same photos, the same splits (our
// splitDataset with each seed, exported to the python side) and the same ImageNet weights
// (converted by bench/anchor/export.ts + keras_mobilenet.py; test/anchor-weights.test.ts checks the
// conversion). Prints both wall times, the ratio and both accuracies per run, then the means.
//
//   npm run bench:anchor                                   # default + keras recipe, alpha 1.0, seeds 42 7 123
//   npm run bench:anchor -- --seeds 7 --recipes keras --alphas 0.35 --epochs 2 --fine-tune-epochs 1
import { spawn, spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { createInterface } from 'node:readline';
import { parseArgs } from 'node:util';
import { TRAINING_NODE_FLAGS } from '../cli/node-flags.js';
import { ManifestSchema } from '../core/manifest.js';
import { tf } from '../core/tf.js';
import { resolveTrainOptions, type TrainOptions } from '../training/options.js';
import { boundaryLayerName } from '../training/tail/base-layers.js';
import { exportSplit, exportWeights } from './anchor/export.js';
import { machineLine } from './machine.js';

console.log(machineLine());

const repo = path.resolve(import.meta.dirname, '..');
const shared = process.env.EDGETUNE_SHARED_DIR ?? path.resolve(repo, '../shared');
const data = path.join(shared, 'datasets/alpaca');
const weights = (alpha: string) => path.join(shared, `weights/mobilenet_v2_${alpha}_224_imagenet/model.json`);
const PYTHON = process.env.ANCHOR_PYTHON ?? '/usr/bin/python3';
// Measured once, before any run: PyTorch's OpenMP wait policy follows the machine's load, not ours.
const loadedAtStart = os.loadavg()[0] > os.cpus().length;

const { values } = parseArgs({
  options: {
    seeds: { type: 'string', default: '42,7,123' },
    recipes: { type: 'string', default: 'default,keras' },
    alphas: { type: 'string', default: '1.0' },
    /** Overrides for a short run (both sides get the same values). */
    epochs: { type: 'string' },
    'fine-tune-epochs': { type: 'string' },
    /** Threads for PyTorch (ours uses its default 2 workers). */
    threads: { type: 'string', default: '2' },
    'skip-ours': { type: 'boolean', default: false },
  },
});
const seeds = values.seeds!.split(',').filter(Boolean).map(Number);
const recipes = values.recipes!.split(',').filter(Boolean) as TrainOptions['recipe'][];
const alphas = values.alphas!.split(',').filter(Boolean);
for (const r of recipes) if (r !== 'default' && r !== 'keras') throw new Error(`--recipes: default or keras, got ${r}`);
for (const a of alphas) if (!existsSync(weights(a))) throw new Error(`no shared weights for alpha ${a}: ${weights(a)}`);
if (!existsSync(data)) {
  console.error(`bench:anchor needs the alpaca photos in ${data}`);
  process.exit(2);
}
const overrides: Partial<TrainOptions> = {};
if (values.epochs !== undefined) overrides.epochs = Number(values.epochs);
if (values['fine-tune-epochs'] !== undefined) overrides.fineTuneEpochs = Number(values['fine-tune-epochs']);

const torchCheck = spawnSync(PYTHON, ['-c', 'import torch, torchvision; print(torch.__version__)'], { encoding: 'utf8' });
const torchVersion = torchCheck.status === 0 ? torchCheck.stdout.trim() : undefined;
if (!torchVersion) {
  console.log(
    `PyTorch is NOT installed for ${PYTHON} (apt-get install python3-torch python3-torchvision): only our side runs, there is no anchor to compare with.`,
  );
}

// Build the CLI before any timing, so no run pays for esbuild.
const build = spawnSync(
  process.execPath,
  ['-e', "import('./scripts/build.mjs').then(async (b) => { if (!b.freshBuild()) await b.buildDist(); })"],
  {
    cwd: repo,
    stdio: 'inherit',
  },
);
if (build.status !== 0) throw new Error('building the CLI failed');

// This process only decodes the tfjs weight shards to export them: the cpu backend is enough.
await tf.setBackend('cpu');
const tmp = await mkdtemp(path.join(os.tmpdir(), 'bench-anchor-'));
const f = (n: number | null | undefined, d = 1) => (n === undefined || n === null || Number.isNaN(n) ? '-' : n.toFixed(d));

interface Side {
  wall: number;
  frozen?: number;
  fineTuned?: number;
  boundaryIps?: number;
  peakRssMiB?: number;
  /** Seconds: decode, phase 1 (features + head), phase 2. */
  phases: [number | undefined, number | undefined, number | undefined];
}

async function run(cmd: string, args: string[], env: NodeJS.ProcessEnv, onLine: (l: string) => void): Promise<number> {
  const t = performance.now();
  const child = spawn(cmd, args, { cwd: repo, env, stdio: ['ignore', 'pipe', 'pipe'] });
  let err = '';
  child.stderr.on('data', (b) => {
    err = (err + b).slice(-4000);
  });
  createInterface({ input: child.stdout }).on('line', onLine);
  const code = await new Promise<number | null>((r) => child.on('exit', r));
  if (code !== 0) throw new Error(`${path.basename(args.find((a) => !a.startsWith('--')) ?? cmd)} exited ${code}:\n${err}`);
  return (performance.now() - t) / 1000;
}

async function ours(opts: TrainOptions, alpha: string, out: string): Promise<Side> {
  const args = [
    ...TRAINING_NODE_FLAGS,
    path.join(repo, 'bin/edgetune.mjs'),
    'train',
    data,
    '--out',
    out,
    '--seed',
    String(opts.seed),
    '--json',
    '--base-weights',
    weights(alpha),
  ];
  if (opts.recipe === 'keras') args.push('--recipe', 'keras');
  if (overrides.epochs !== undefined) args.push('--epochs', String(opts.epochs));
  if (overrides.fineTuneEpochs !== undefined) args.push('--fine-tune-epochs', String(opts.fineTuneEpochs));
  let peak: number | undefined;
  const wall = await run(process.execPath, args, process.env, (line) => {
    try {
      const e = JSON.parse(line);
      if (e.type === 'done') peak = e.peakRssMiB;
    } catch {
      // not an event
    }
  });
  const m = ManifestSchema.parse(JSON.parse(await readFile(path.join(out, 'manifest.json'), 'utf8')));
  return {
    wall,
    frozen: m.metrics.frozen.valAccuracy,
    fineTuned: m.metrics.fineTuned?.valAccuracy,
    boundaryIps: m.timings.boundaryImagesPerSecond,
    peakRssMiB: peak,
    phases: [m.timings.decodeSeconds, m.timings.frozenSeconds, m.timings.fineTuneSeconds],
  };
}

async function anchor(opts: TrainOptions, weightsPrefix: string, splitFile: string, cfgFile: string): Promise<Side> {
  const cfg = {
    weights: weightsPrefix,
    split: splitFile,
    boundary: boundaryLayerName(opts.fineTuneAt),
    threads: Number(values.threads),
    ...opts,
  };
  await writeFile(cfgFile, JSON.stringify(cfg));
  let result: Record<string, number | string | null> | undefined;
  const wall = await run(
    PYTHON,
    [path.join(repo, 'bench/anchor/train.py'), cfgFile],
    { ...process.env, ANCHOR_OVERSUBSCRIBED: loadedAtStart ? '1' : '0' },
    (line) => {
      if (line.startsWith('{')) result = JSON.parse(line);
    },
  );
  if (!result) throw new Error('the PyTorch script printed no result');
  const r = result as Record<string, number | null>;
  ompPolicies.add(String(result.ompWaitPolicy));
  return {
    wall,
    frozen: r.valAccuracyFrozen ?? undefined,
    fineTuned: r.valAccuracyFineTuned ?? undefined,
    boundaryIps: r.boundaryImagesPerSecond ?? undefined,
    peakRssMiB: r.peakRssMiB ?? undefined,
    phases: [r.decodeSeconds ?? undefined, r.frozenSeconds ?? undefined, r.fineTuneSeconds ?? undefined],
  };
}

console.log(
  `bench:anchor: ours = bin/edgetune.mjs train (its default engine for the frozen layers, onnxruntime-node when it loads, else tfjs WASM; 2 workers; the tail on tfjs WASM); PyTorch ${torchVersion ?? 'absent'} = bench/anchor/train.py (${values.threads} threads, malloc thresholds set); alpaca, seeds ${seeds.join(' ')}${
    Object.keys(overrides).length ? `; overrides ${JSON.stringify(overrides)}` : ''
  }`,
);
console.log(
  'config        seed | ours wall s  torch wall s  ours/torch | ours acc p1  p2     | torch acc p1  p2     | boundary img/s ours torch | peak RSS MiB ours torch',
);
const all: { config: string; o?: Side; t?: Side }[] = [];
const ompPolicies = new Set<string>();
try {
  for (const alpha of alphas) {
    const prefix = path.join(tmp, `weights-${alpha}`);
    if (torchVersion) await exportWeights(weights(alpha), prefix);
    for (const recipe of recipes) {
      const config = `${recipe}-${alpha}`;
      for (const seed of seeds) {
        const opts = resolveTrainOptions({ data, out: path.join(tmp, `out-${config}-${seed}`), seed, recipe, ...overrides });
        const splitFile = path.join(tmp, `split-${seed}.json`);
        await exportSplit(data, { seed, validationSplit: opts.validationSplit, stratified: opts.stratified }, splitFile);
        const o = values['skip-ours'] ? undefined : await ours(opts, alpha, opts.out);
        const t = torchVersion ? await anchor(opts, prefix, splitFile, path.join(tmp, `cfg-${config}-${seed}.json`)) : undefined;
        all.push({ config, o, t });
        const ph = (x?: Side) => (x ? x.phases.map((p) => f(p)).join(' / ') : '-');
        console.log(
          `${config.padEnd(12)} ${String(seed).padStart(5)} | ${f(o?.wall).padStart(11)} ${f(t?.wall).padStart(13)} ${(o && t ? `${f(o.wall / t.wall, 2)}x` : '-').padStart(11)} | ${f(o?.frozen, 4).padStart(11)} ${f(o?.fineTuned, 4).padStart(6)} | ${f(t?.frozen, 4).padStart(12)} ${f(t?.fineTuned, 4).padStart(6)} | ${f(o?.boundaryIps).padStart(19)} ${f(t?.boundaryIps).padStart(5)} | ${f(o?.peakRssMiB, 0).padStart(17)} ${f(t?.peakRssMiB, 0).padStart(5)}`,
        );
        console.log(`${''.padEnd(18)} | decode / phase 1 / phase 2 s: ours ${ph(o)}; torch ${ph(t)}`);
      }
      const mine = all.filter((r) => r.config === config);
      const mean = (g: (r: (typeof mine)[number]) => number | undefined) => {
        const xs = mine.map(g).filter((x): x is number => x !== undefined);
        return xs.length ? xs.reduce((a, b) => a + b, 0) / xs.length : undefined;
      };
      const ow = mean((r) => r.o?.wall);
      const tw = mean((r) => r.t?.wall);
      console.log(
        `${`${config} mean`.padEnd(18)} | ${f(ow).padStart(11)} ${f(tw).padStart(13)} ${(ow && tw ? `${f(ow / tw, 2)}x` : '-').padStart(11)} | ${f(
          mean((r) => r.o?.frozen),
          4,
        ).padStart(11)} ${f(
          mean((r) => r.o?.fineTuned),
          4,
        ).padStart(6)} | ${f(
          mean((r) => r.t?.frozen),
          4,
        ).padStart(12)} ${f(
          mean((r) => r.t?.fineTuned),
          4,
        ).padStart(6)} |`,
      );
    }
  }
  console.log(
    'ours/torch > 1: PyTorch is faster. Wall times are whole processes (ours: decode, both phases, evaluation, export, report; PyTorch: start-up, import, decode, both phases).',
  );
  if (!torchVersion) console.log('PyTorch was absent: the torch columns are empty.');
  else {
    const [load] = os.loadavg();
    console.log(
      `PyTorch OMP_WAIT_POLICY: ${[...ompPolicies].join(', ')} (PASSIVE is chosen when the load average was above the core count when the bench started: ${loadedAtStart ? 'it was, the figures are not idle figures' : 'it was not'}); load average at the end ${load.toFixed(1)} on ${os.cpus().length} cores (our own runs included)`,
    );
  }
} finally {
  await rm(tmp, { recursive: true, force: true });
}
