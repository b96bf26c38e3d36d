// npm run bench:export [-- <model dir>... [--data <folder>] [--runs 30]]
// npm run bench:export -- --seeds 42,7,123 [--alphas 1.0,0.35] [--epochs 10 --fine-tune-epochs 10]
//   also trains one model per alpha and seed (reused when present), exports tflite-int8 (calibrated
//   on up to 300 training images, verified in TensorFlow Lite on the validation split) and prints
//   the int8 accuracy delta per seed and its mean. --epochs/--fine-tune-epochs shorten training
//   (say so when quoting the figures).
// For each model: every export format's file size, single-image latency in its runtime (tfjs WASM
// fused executor on 1 thread as the API runs it; onnxruntime-node CPU on 1 and 2 threads) and
// validation accuracy next to the tfjs model's, with the max |dp| the export verification measured.
// Without a model dir it trains the alpaca models (alpha 1.0 and 0.35, default recipe, seed 42) into
// .edgetune/bench-export/ once (reused when present).
import { existsSync } from 'node:fs';
import { mkdtemp, readFile, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { describeBackend, initBackend } from '../core/backend.js';
import { exportFormats } from '../core/export/export-formats.js';
import { FORMATS, type FormatId } from '../core/export/formats.js';
import { onnxSession } from '../core/export/onnx-runtime.js';
import { createFastForward } from '../core/fast-forward.js';
import { type Manifest, VerificationSchema } from '../core/manifest.js';
import { loadModel } from '../core/model-loader.js';
import { tf } from '../core/tf.js';
import { decodeFiles, listDataset, splitDataset } from '../training/dataset.js';
import { labelledPixels } from '../training/export-formats.js';
import { runTraining } from '../training/job.js';
import { resolveTrainOptions } from '../training/options.js';

const REPO = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const SHARED = process.env.EDGETUNE_SHARED_DIR ?? path.resolve(REPO, '../shared');
const ALPACA = path.join(SHARED, 'datasets/alpaca');
const FORMATS_MEASURED: FormatId[] = ['onnx', 'onnx-float16'];

const args = process.argv.slice(2);
function opt(name: string): string | undefined {
  const i = args.indexOf(`--${name}`);
  if (i < 0) return undefined;
  const v = args[i + 1];
  args.splice(i, 2);
  return v;
}
const data = opt('data');
const runs = Number(opt('runs') ?? 30);
const seeds = opt('seeds')?.split(',').map(Number);
const alphas = (opt('alphas') ?? '1.0,0.35').split(',');
const epochs = opt('epochs');
const fineTuneEpochs = opt('fine-tune-epochs');
if (seeds?.some((x) => !Number.isInteger(x))) throw new Error('--seeds: comma-separated integers, e.g. 42,7,123');
const dirs = args.filter((a) => !a.startsWith('--'));

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

async function trainedAlpacaModels(seedList?: number[]): Promise<string[]> {
  const out: string[] = [];
  for (const alpha of alphas) {
    const file = `mobilenet_v2_${alpha}_224_imagenet`;
    for (const seed of seedList ?? [undefined]) {
      const short = epochs || fineTuneEpochs ? `-e${epochs ?? 'd'}+${fineTuneEpochs ?? 'd'}` : '';
      const dir = path.join(REPO, '.edgetune/bench-export', seed === undefined ? `alpaca-${alpha}` : `alpaca-${alpha}-seed${seed}${short}`);
      if (!existsSync(path.join(dir, 'manifest.json'))) {
        const recipe = short ? `epochs ${epochs ?? 'default'} + ${fineTuneEpochs ?? 'default'}` : 'default recipe';
        console.log(`training alpaca alpha ${alpha} (${recipe}, seed ${seed ?? 42}) into ${dir} ...`);
        const t = performance.now();
        const opts = resolveTrainOptions({
          data: ALPACA,
          out: dir,
          baseWeights: path.join(SHARED, 'weights', file, 'model.json'),
          ...(seed !== undefined ? { seed } : {}),
          ...(epochs ? { epochs: Number(epochs) } : {}),
          ...(fineTuneEpochs ? { fineTuneEpochs: Number(fineTuneEpochs) } : {}),
        });
        (await runTraining(opts, () => {})).model.dispose();
        console.log(`  trained in ${((performance.now() - t) / 1000).toFixed(0)} s`);
      }
      out.push(dir);
    }
  }
  return out;
}

/** Up to 300 images of the model's training split (re-made from the manifest), for int8 calibration. */
async function calibrationImages(manifest: Manifest) {
  const h = manifest.hyperparameters as { validationSplit: number; seed: number; stratified?: boolean };
  const listing = await listDataset(manifest.dataset.source);
  const { train } = splitDataset(listing, { validationSplit: h.validationSplit, seed: h.seed, stratified: h.stratified });
  const decoded = await decodeFiles(train.slice(0, 300), { size: manifest.input.size, resize: manifest.input.resize });
  return labelledPixels(
    decoded.images,
    decoded.images.map((i) => i.file.label),
    'training split',
  );
}

interface Int8Row {
  alpha: number;
  seed: number;
  size: number;
  tfjs?: number;
  int8?: number;
  agreement?: number;
  bytes?: number;
  error?: string;
}
const int8Rows: Int8Row[] = [];

/** The model's validation split (re-made from the manifest), or every image of --data. */
async function validationImages(manifest: Manifest) {
  const h = manifest.hyperparameters as { validationSplit: number; seed: number; stratified?: boolean };
  const source = data ?? manifest.dataset.source;
  const listing = await listDataset(source);
  const files = data
    ? listing.files
    : splitDataset(listing, { validationSplit: h.validationSplit, seed: h.seed, stratified: h.stratified }).validation;
  const decoded = await decodeFiles(files, { size: manifest.input.size, resize: manifest.input.resize });
  return labelledPixels(
    decoded.images,
    decoded.images.map((i) => i.file.label),
    data ? `${source} (all)` : 'validation split',
  );
}

async function latencyTfjs(model: tf.LayersModel, size: number): Promise<number> {
  const ff = createFastForward(model);
  const x = tf.randomUniform([1, size, size, 3], 0, 255, 'float32', 1);
  const ms: number[] = [];
  for (let i = 0; i < runs + 3; i++) {
    const t = performance.now();
    const y = ff.forward(x);
    await y.data();
    y.dispose();
    if (i >= 3) ms.push(performance.now() - t);
  }
  x.dispose();
  ff.dispose();
  return median(ms);
}

async function latencyOnnx(bytes: Uint8Array, size: number, threads: number): Promise<number> {
  const s = await onnxSession(bytes, { threads });
  const x = new Float32Array(size * size * 3).map((_, i) => (i * 37) % 256);
  const ms: number[] = [];
  for (let i = 0; i < runs + 3; i++) {
    const t = performance.now();
    await s.run(x, [1, size, size, 3]);
    if (i >= 3) ms.push(performance.now() - t);
  }
  await s.release();
  return median(ms);
}

const backend = await initBackend('wasm', () => {});
console.log(`tfjs: ${describeBackend(backend)}; runs per latency: ${runs} (median). The machine may be shared with other work.`);
const targets = dirs.length ? dirs : await trainedAlpacaModels(seeds);
for (const dir of targets) {
  const { model, manifest } = await loadModel(dir);
  const size = manifest.input.size;
  const val = await validationImages(manifest);
  const verification = VerificationSchema.parse(JSON.parse(await readFile(path.join(dir, 'verification.json'), 'utf8')));
  const out = await mkdtemp(path.join(tmpdir(), 'bench-export-'));
  try {
    const t = performance.now();
    // verification.json's images are the first validation images: only with --data are they extra.
    const ex = await exportFormats(model, manifest, FORMATS_MEASURED, {
      outDir: out,
      verification: data ? verification : undefined,
      data: val,
    });
    const exportSeconds = (performance.now() - t) / 1000;
    const tfjsBytes = (await stat(path.join(dir, 'weights.bin'))).size + (await stat(path.join(dir, 'model.json'))).size;
    const first = ex.exports[0].verification;
    console.log(
      `\n${manifest.name} ${manifest.version}: alpha ${manifest.backbone.alpha}, ${size}x${size}, ${manifest.classes.length} classes; ` +
        `${val.shape[0]} ${val.source} images${data ? ` + ${verification.shape[0]} verification.json images` : ''} (export + verification of ${FORMATS_MEASURED.length} formats: ${exportSeconds.toFixed(1)} s)`,
    );
    console.log('| format | file size | latency 1 thread | latency 2 threads | accuracy (tfjs) | max abs dp vs tfjs | top-1 agreement |');
    console.log('| --- | --- | --- | --- | --- | --- | --- |');
    const tfjsMs = await latencyTfjs(model, size);
    const acc = (a?: number) => (a === undefined ? '-' : a.toFixed(4));
    console.log(
      `| tfjs (WASM fused) | ${(tfjsBytes / 1e6).toFixed(2)} MB | ${tfjsMs.toFixed(1)} ms | - | ${acc(first.referenceAccuracy)} | (reference) | - |`,
    );
    for (const r of ex.exports) {
      const bytes = new Uint8Array(await readFile(path.join(out, r.file)));
      const one = await latencyOnnx(bytes, size, 1);
      const two = await latencyOnnx(bytes, size, 2);
      const v = r.verification;
      console.log(
        `| ${r.format} (${FORMATS[r.format].runtime}) | ${(r.bytes / 1e6).toFixed(2)} MB | ${one.toFixed(1)} ms | ${two.toFixed(1)} ms | ${acc(v.accuracy)} (${acc(v.referenceAccuracy)}) | ${v.maxAbsDiff.toExponential(2)} | ${(v.top1Agreement * 100).toFixed(1)}% |`,
      );
    }
    if (seeds) {
      const row: Int8Row = { alpha: manifest.backbone.alpha, seed: (manifest.hyperparameters as { seed: number }).seed, size };
      try {
        const q = await exportFormats(model, manifest, ['tflite-int8'], {
          outDir: out,
          data: val,
          calibration: await calibrationImages(manifest),
        });
        const v = q.exports.find((e) => e.format === 'tflite-int8')!;
        Object.assign(row, {
          tfjs: v.verification.referenceAccuracy,
          int8: v.verification.accuracy,
          agreement: v.verification.top1Agreement,
          bytes: v.bytes,
        });
        console.log(
          `| tflite-int8 (${v.runtime}) | ${(v.bytes / 1e6).toFixed(2)} MB | - | - | ${acc(row.int8)} (${acc(row.tfjs)}) | ${v.verification.maxAbsDiff.toExponential(2)} | ${(v.verification.top1Agreement * 100).toFixed(1)}% |`,
        );
      } catch (e) {
        row.error = (e as Error).message;
        console.log(`tflite-int8: not measured: ${row.error}`);
      }
      int8Rows.push(row);
    }
  } finally {
    model.dispose();
    await rm(out, { recursive: true, force: true });
  }
}

if (int8Rows.length) {
  console.log(
    `\nint8 accuracy delta (tflite-int8 - tfjs float32, validation split)${epochs || fineTuneEpochs ? `; SHORT training: epochs ${epochs ?? 'default'} + ${fineTuneEpochs ?? 'default'}` : ''}`,
  );
  console.log('| alpha | size | seed | tfjs accuracy | int8 accuracy | delta (points) | top-1 agreement | int8 file |');
  console.log('| --- | --- | --- | --- | --- | --- | --- | --- |');
  for (const r of int8Rows) {
    if (r.error) console.log(`| ${r.alpha} | ${r.size} | ${r.seed} | - | - | not measured | - | - |`);
    else
      console.log(
        `| ${r.alpha} | ${r.size} | ${r.seed} | ${r.tfjs?.toFixed(4)} | ${r.int8?.toFixed(4)} | ${(100 * ((r.int8 ?? 0) - (r.tfjs ?? 0))).toFixed(2)} | ${(100 * (r.agreement ?? 0)).toFixed(1)}% | ${((r.bytes ?? 0) / 1e6).toFixed(2)} MB |`,
      );
  }
  for (const alpha of [...new Set(int8Rows.map((r) => r.alpha))]) {
    const ok = int8Rows.filter((r) => r.alpha === alpha && !r.error);
    if (!ok.length) continue;
    const mean = ok.reduce((a, r) => a + ((r.int8 ?? 0) - (r.tfjs ?? 0)), 0) / ok.length;
    console.log(
      `alpha ${alpha}: mean int8 delta over seeds ${ok.map((r) => r.seed).join(', ')}: ${(100 * mean).toFixed(2)} points (target: >= -1)`,
    );
  }
}
