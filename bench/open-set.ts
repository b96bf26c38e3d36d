// npm run bench:open-set: how often "I don't know" fires, on photos of a class the model never saw and
// on unseen photos of its own classes, plus the calibration figures of the same runs.
//
// 1. Synthetic (edgetune demo-data: it is synthetic, shapes on photo-like backgrounds): 6 classes,
//    train on 5, send the sixth (crescents); in-class = fresh photos of the 5 classes (another seed).
// 2. Real (../shared alpaca, ImageNet weights): every 5th photo of each class held out before
//    training (never seen: neither training nor validation); outside = the synthetic shape photos
//    (not real photos of another class: we have none).
// The temperature and the threshold are fitted on the validation split of each run (never on the
// held-out photos); the held-out figures are therefore selection-free. The bench prints, per run:
// the flagged / rejected rates at the threshold and at both ends of its 95% bootstrap interval, the
// AUROC of the distance (in-class held-out vs outside), and the ECE before / after temperature
// scaling on the held-out in-class photos (not fitted on them).
//
//   npm run bench:open-set                          # seed 42, alpha 0.35
//   npm run bench:open-set -- --seeds 42,7,123 --alpha 1.0
import { existsSync } from 'node:fs';
import { copyFile, mkdir, mkdtemp, readdir, rename, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { initBackend } from '../core/backend.js';
import { topConfidenceEce } from '../training/calibration.js';
import { DEMO_CLASSES, generateDemoDataset } from '../training/demo-data.js';
import { runTraining } from '../training/job.js';
import { resolveTrainOptions } from '../training/options.js';
import { describeSummary, type ReviewRow, type ReviewSummary, reviewFolder } from '../training/review.js';

const repo = path.resolve(import.meta.dirname, '..');
const shared = process.env.EDGETUNE_SHARED_DIR ?? path.resolve(repo, '../shared');
const { values } = parseArgs({
  options: {
    seeds: { type: 'string', default: '42' },
    alpha: { type: 'string', default: '0.35' },
    'per-class': { type: 'string', default: '60' },
    only: { type: 'string', default: 'synthetic,alpaca' },
  },
});
const weights = path.join(shared, `weights/mobilenet_v2_${values.alpha}_224_imagenet/model.json`);
if (!existsSync(weights)) {
  console.error(`bench:open-set needs the shared ImageNet weights: ${weights}`);
  process.exit(2);
}
const alpaca = path.join(shared, 'datasets/alpaca');
const seeds = values.seeds!.split(',').map(Number);
const only = new Set(values.only!.split(','));

async function trainOn(data: string, out: string, seed: number) {
  // --temperature fit: the bench measures what applying the temperature does to held-out calibration.
  const opts = resolveTrainOptions({ data, out, seed, baseWeights: weights, workers: 2, temperature: 'fit' });
  const { manifest, model } = await runTraining(opts, () => {});
  return { manifest, model };
}

const pct = (a: number, b: number) => (b ? (100 * a) / b : Number.NaN);
interface Row {
  dataset: string;
  seed: number;
  inClass: ReviewSummary;
  outside: ReviewSummary;
  temperature: number;
  eceBefore: number;
  eceAfter: number;
  threshold: number;
  interval: [number, number];
  valAccepted: number;
  metric: string;
  auroc: number;
  /** [flagged outside, rejected in-class] at the interval's low and high ends. */
  atLow: [number, number];
  atHigh: [number, number];
  heldOutEceBefore: number;
  heldOutEceAfter: number;
}

const distancesOf = (rows: ReviewRow[]) => rows.filter((r) => r.distance !== undefined).map((r) => r.distance as number);
const above = (d: number[], t: number) => (d.length ? d.filter((x) => x > t).length / d.length : Number.NaN);
function auroc(inside: number[], outside: number[]): number {
  let s = 0;
  for (const a of inside) for (const b of outside) s += b > a ? 1 : b === a ? 0.5 : 0;
  return s / (inside.length * outside.length);
}
function heldOutEce(rows: ReviewRow[]): number {
  const r = rows.filter((x) => x.predicted);
  return topConfidenceEce(
    r.map((x) => x.probability),
    r.map((x) => x.predicted === x.label),
  );
}

async function main() {
  await initBackend(undefined, () => {});
  const tmp = await mkdtemp(path.join(os.tmpdir(), 'bench-open-set-'));
  const perClass = Number(values['per-class']);
  const demo = path.join(tmp, 'demo6');
  await generateDemoDataset(demo, { classes: 6, perClass, seed: 42 });
  const fresh = path.join(tmp, 'fresh5');
  await generateDemoDataset(fresh, { classes: 5, perClass: 30, seed: 4242 });
  const left = DEMO_CLASSES[5];
  // The dataset lister takes real folders (no symlinks): the sixth class is moved out of a copy.
  const train5 = path.join(tmp, 'train5');
  await generateDemoDataset(train5, { classes: 6, perClass, seed: 42 });
  const leftOut = path.join(tmp, 'left-out');
  await mkdir(leftOut);
  await rename(path.join(train5, left), path.join(leftOut, left));
  const rows: Row[] = [];

  // Real photos: every 5th of each class held out (copied into the temporary folder, removed at the end).
  const alpacaTrain = path.join(tmp, 'alpaca-train');
  const alpacaHeld = path.join(tmp, 'alpaca-heldout');
  if (only.has('alpaca') && existsSync(alpaca)) {
    for (const c of ['alpaca', 'not_alpaca']) {
      const files = (await readdir(path.join(alpaca, c))).filter((f) => !f.startsWith('.')).sort();
      await mkdir(path.join(alpacaTrain, c), { recursive: true });
      await mkdir(path.join(alpacaHeld, c), { recursive: true });
      for (const [i, f] of files.entries()) {
        await copyFile(path.join(alpaca, c, f), path.join(i % 5 === 4 ? alpacaHeld : alpacaTrain, c, f));
      }
    }
  }

  for (const seed of seeds) {
    const jobs: [string, string, string, string][] = [];
    if (only.has('synthetic')) jobs.push(['synthetic 5 of 6', train5, fresh, leftOut]);
    if (only.has('alpaca') && existsSync(alpaca)) jobs.push(['alpaca (real)', alpacaTrain, alpacaHeld, demo]);
    for (const [name, data, inside, outside] of jobs) {
      const t0 = performance.now();
      const { manifest, model } = await trainOn(data, path.join(tmp, `model-${name.split(' ')[0]}-${seed}`), seed);
      const a = await reviewFolder(model, manifest, inside);
      const b = await reviewFolder(model, manifest, outside);
      const raw = await reviewFolder(model, { ...manifest, calibration: undefined, openSet: undefined }, inside);
      model.dispose();
      const c = manifest.calibration!;
      const o = manifest.openSet!;
      const di = distancesOf(a.rows);
      const dout = distancesOf(b.rows);
      rows.push({
        dataset: name,
        seed,
        inClass: a.summary,
        outside: b.summary,
        temperature: c.temperature,
        eceBefore: c.eceBefore,
        eceAfter: c.eceAfter,
        threshold: o.threshold,
        interval: o.interval,
        valAccepted: o.accepted,
        metric: o.metric,
        auroc: auroc(di, dout),
        atLow: [above(dout, o.interval[0]), above(di, o.interval[0])],
        atHigh: [above(dout, o.interval[1]), above(di, o.interval[1])],
        heldOutEceBefore: heldOutEce(raw.rows),
        heldOutEceAfter: heldOutEce(a.rows),
      });
      const r = rows[rows.length - 1];
      console.log(`\n== ${name}, seed ${seed} (${((performance.now() - t0) / 1000).toFixed(0)} s) ==`);
      console.log(
        `T ${c.temperature.toFixed(3)}, validation ECE ${c.eceBefore.toFixed(4)} -> ${c.eceAfter.toFixed(4)} (fitted on the ${c.fittedOn}); threshold ${o.threshold.toFixed(4)} [95% ${o.interval[0].toFixed(4)}, ${o.interval[1].toFixed(4)}] for ${100 * o.target}% of validation accepted`,
      );
      console.log(
        `${o.metric}: AUROC ${r.auroc.toFixed(3)}; at the interval's ends flagged ${(100 * r.atLow[0]).toFixed(1)}%-${(100 * r.atHigh[0]).toFixed(1)}%, in-class rejected ${(100 * r.atHigh[1]).toFixed(1)}%-${(100 * r.atLow[1]).toFixed(1)}%; held-out ECE ${r.heldOutEceBefore.toFixed(4)} -> ${r.heldOutEceAfter.toFixed(4)} (${a.summary.inClass} photos T was not fitted on)`,
      );
      console.log(`-- held-out in-class photos (${inside}):\n${describeSummary(a.summary)}`);
      console.log(`-- outside photos (${outside}):\n${describeSummary(b.summary)}`);
    }
  }
  console.log('\nsummary (mean over seeds):');
  for (const name of [...new Set(rows.map((r) => r.dataset))]) {
    const rs = rows.filter((r) => r.dataset === name);
    const mean = (f: (r: Row) => number) => rs.reduce((s, r) => s + f(r), 0) / rs.length;
    console.log(
      `${name}: seeds ${rs.map((r) => r.seed).join('/')}: outside flagged unknown ${mean((r) => pct(r.outside.outsideFlagged, r.outside.outside)).toFixed(1)}%, held-out in-class rejected ${mean((r) => pct(r.inClass.inClassRejected, r.inClass.inClass)).toFixed(1)}%, held-out accuracy ${mean((r) => pct(r.inClass.inClassCorrect, r.inClass.inClass)).toFixed(1)}%, AUROC ${mean((r) => r.auroc).toFixed(3)}, flagged at the interval's ends ${mean((r) => 100 * r.atLow[0]).toFixed(1)}%-${mean((r) => 100 * r.atHigh[0]).toFixed(1)}%, T ${mean((r) => r.temperature).toFixed(3)}, validation ECE (fitted on) ${mean((r) => r.eceBefore).toFixed(4)} -> ${mean((r) => r.eceAfter).toFixed(4)}, held-out ECE (not fitted on) ${mean((r) => r.heldOutEceBefore).toFixed(4)} -> ${mean((r) => r.heldOutEceAfter).toFixed(4)}`,
    );
  }
  await rm(tmp, { recursive: true, force: true });
}

await main();
