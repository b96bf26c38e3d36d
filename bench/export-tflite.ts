// TFLite exports of a trained model: file size, max |dp| against the float32 tfjs model (fused
// forward), validation accuracy and single-image latency in TensorFlow Lite (WASM interpreter in
// headless Chromium), for float32, float16 and int8 (min/max and percentile calibration).
//   npm run bench:export-tflite -- --model <model dir> [--data ../shared/datasets/alpaca] [--calibration-images 300]
// The validation set is the training run's (split re-made from the manifest's seed and share).
import path from 'node:path';
import { parseArgs } from 'node:util';
import { initBackend } from '../core/backend.js';
import { toClassProbabilities } from '../core/classifier.js';
import { calibrateRanges } from '../core/export/tflite/calibrate.js';
import { openTfliteRuntime, type TfliteVariant, verifyTflite, writeTflite } from '../core/export/tflite/index.js';
import { createFastForward } from '../core/fast-forward.js';
import { loadModelArtifacts } from '../core/file-io.js';
import { fusedGraph } from '../core/graph/fused-graph.js';
import { parseManifest } from '../core/manifest.js';
import { tf } from '../core/tf.js';
import { decodeFiles, listDataset, splitDataset } from '../training/dataset.js';

const { values } = parseArgs({
  options: {
    model: { type: 'string' },
    data: { type: 'string', default: '../shared/datasets/alpaca' },
    'calibration-images': { type: 'string', default: '300' },
  },
});
if (!values.model) {
  console.error('usage: npm run bench:export-tflite -- --model <model dir> [--data <dataset folder>] [--calibration-images 300]');
  process.exit(2);
}
const modelDir = path.resolve(values.model);
await initBackend('auto', () => {});
const manifest = parseManifest(JSON.parse(await (await import('node:fs/promises')).readFile(path.join(modelDir, 'manifest.json'), 'utf8')));
const model = await tf.loadLayersModel(tf.io.fromMemory(await loadModelArtifacts(modelDir)));
const hp = manifest.hyperparameters as { validationSplit: number; seed: number; stratified?: boolean };
const listing = await listDataset(values.data as string);
const split = splitDataset(listing, { validationSplit: hp.validationSplit, seed: hp.seed, stratified: hp.stratified });
const size = manifest.input.size;
const decode = async (files: typeof split.train) => (await decodeFiles(files, { size, resize: manifest.input.resize })).images;
const val = await decode(split.validation);
const calibCount = Math.min(Number(values['calibration-images']), split.train.length);
const calib = await decode(split.train.slice(0, calibCount));
const numClasses = manifest.classes.length;

// Reference: the float32 tfjs model through the fused forward, on the same uint8 pixels.
const ff = createFastForward(model);
const expected: number[][] = [];
for (let s = 0; s < val.length; s += 16) {
  const part = val.slice(s, s + 16);
  const flat = new Float32Array(part.length * size * size * 3);
  for (const [i, img] of part.entries()) flat.set(img.data, i * size * size * 3);
  const out = tf.tidy(() => ff.forward(tf.tensor4d(flat, [part.length, size, size, 3])));
  expected.push(...toClassProbabilities((await out.data()) as Float32Array, numClasses));
  out.dispose();
}
ff.dispose();
const labels = val.map((v) => v.file.label);
const pixels = val.map((v) => v.data);
const refAcc = expected.filter((p, i) => p.indexOf(Math.max(...p)) === labels[i]).length / val.length;

const status = await openTfliteRuntime();
if (!status.ok) {
  console.error(`no TFLite interpreter here: ${status.reason}`);
  process.exit(1);
}
const graph = fusedGraph(model);
console.log(`model ${manifest.name} ${manifest.version} (alpha ${manifest.backbone.alpha}, ${size}x${size}, ${numClasses} classes)`);
console.log(
  `validation ${val.length} images; tfjs float32 accuracy ${refAcc.toFixed(4)}; int8 calibration on ${calib.length} training images`,
);
console.log(`runtime: ${status.runtime.name}`);
const rows: Record<string, unknown>[] = [];
const runs: { variant: TfliteVariant; method?: 'minmax' | 'percentile' }[] = [
  { variant: 'float32' },
  { variant: 'float16' },
  { variant: 'int8', method: 'minmax' },
  { variant: 'int8', method: 'percentile' },
];
let f32Size = 0;
for (const r of runs) {
  // Written and verified step by step (not exportTflite, which throws on a failed check) so that every
  // variant gets its row, failed or not.
  const t0 = performance.now();
  const ranges =
    r.variant === 'int8'
      ? calibrateRanges(
          graph,
          calib.map((c) => c.data),
          { method: r.method },
        )
      : undefined;
  const bytes = writeTflite(graph, { variant: r.variant, classes: manifest.classes, ranges });
  const writeSeconds = (performance.now() - t0) / 1000;
  const v = await verifyTflite(bytes, r.variant, { pixels, expected, labels }, status.runtime);
  if (v.status === 'unavailable') throw new Error(v.reason);
  if (r.variant === 'float32') f32Size = bytes.length;
  rows.push({
    format: `tflite${r.variant === 'float32' ? '' : `-${r.variant}`}${r.method ? ` (${r.method})` : ''}`,
    bytes: bytes.length,
    'x smaller': +(f32Size / bytes.length).toFixed(2),
    'max |dp|': +v.maxAbsDiff.toExponential(2),
    tolerance: v.tolerance,
    'top-1 agreement': +v.top1Agreement.toFixed(4),
    accuracy: v.accuracy ? +v.accuracy.exported.toFixed(4) : null,
    'delta (points)': v.accuracy ? +(v.accuracy.delta * 100).toFixed(2) : null,
    'infer ms': +v.meanInferMs.toFixed(2),
    'write s': +writeSeconds.toFixed(1),
    status: v.status,
  });
}
console.table(rows);
console.log('(2-core machine shared with other work: latencies are indicative)');
await status.runtime.close();
model.dispose();
