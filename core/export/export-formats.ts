// Exports a trained classifier into other formats, each verified in its own runtime against the
// float32 tfjs model re-run now on the same uint8 pixels (verification.json's inputs, plus labelled
// images when given), and records them in `exports.json` beside the files.
import { mkdir, readFile, rename, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { toClassProbabilities } from '../classifier.js';
import { type FusedGraph, fusedGraph, subgraph } from '../graph/fused-graph.js';
import type { Manifest, Verification } from '../manifest.js';
import { tf } from '../tf.js';
import { sha256 } from '../versioning.js';
import { type ExportRecord, type Exports, ExportsSchema } from './exports-file.js';
import { FORMATS, type FormatId } from './formats.js';
import { writeOnnx } from './onnx.js';
// Registers tflite, tflite-float16, tflite-int8 and tfjs-float16 (after writers.js has loaded: no import cycle).
import './tflite/register.js';
import './tfjs-float16.js';
import { type ExportFile, type PixelBatch, writerFor } from './writers.js';

export const EDGETUNE_VERSION: string = JSON.parse(await readFile(new URL('../../package.json', import.meta.url), 'utf8')).version;

export { type ExportRecord, ExportRecordSchema, type Exports, ExportsSchema, readExportsFile } from './exports-file.js';

export interface LabelledPixels extends PixelBatch {
  /** One per image, or empty when unlabelled. */
  labels: number[];
  source: string;
}

export interface ExportOptions {
  outDir: string;
  /** verification.json of the model folder. */
  verification?: Verification;
  /** More labelled images (the validation images at train time, or `--data`). */
  data?: LabelledPixels;
  /** Training images for int8 calibration. */
  calibration?: PixelBatch;
  log?: (line: string) => void;
}

/** The ONNX file's metadata: classes, versions, input and preprocessing. */
export function exportMetadata(manifest: Manifest): Record<string, string> {
  const size = manifest.input.size;
  return {
    'edgetune.classes': JSON.stringify(manifest.classes),
    'edgetune.version': EDGETUNE_VERSION,
    'edgetune.model': `${manifest.name}@${manifest.version}`,
    'edgetune.input': `image: NHWC float32 RGB 0..255, [batch, ${size}, ${size}, 3], ${manifest.input.resize} resize`,
    'edgetune.preprocessing': `x * ${manifest.preprocessing.scale} + ${manifest.preprocessing.offset}, inside the graph`,
    'edgetune.output': `probabilities: [batch, ${manifest.classes.length}] in the order of edgetune.classes`,
    ...calibrationMetadata(manifest),
  };
}

/** The temperature (metadata only: the graph's probabilities are the uncalibrated ones) and the open-set threshold. */
function calibrationMetadata(manifest: Manifest): Record<string, string> {
  const c = manifest.calibration;
  const o = manifest.openSet;
  return {
    ...(c
      ? {
          'edgetune.temperature': String(c.temperature),
          'edgetune.calibration': `calibrated probabilities = softmax(logits / ${c.temperature}) (sigmoid for 2 classes), T fitted on the ${c.fittedOn}; the output above is uncalibrated (T = 1)`,
        }
      : {}),
    ...(o
      ? { 'edgetune.open-set': JSON.stringify({ metric: o.metric, threshold: o.threshold, target: o.target, fittedOn: o.fittedOn }) }
      : {}),
  };
}

export function joinBatches(parts: (PixelBatch | undefined)[]): PixelBatch | undefined {
  const present = parts.filter((p): p is PixelBatch => !!p && p.shape[0] > 0);
  if (!present.length) return undefined;
  const [, h, w] = present[0].shape;
  for (const p of present)
    if (p.shape[1] !== h || p.shape[2] !== w) throw new Error(`export: images of ${p.shape[1]}x${p.shape[2]} and ${h}x${w} pixels`);
  const n = present.reduce((a, p) => a + p.shape[0], 0);
  return { pixels: Buffer.concat(present.map((p) => p.pixels)), shape: [n, h, w, 3] };
}

/** Class probabilities of the float32 tfjs layers model (model.predict) for uint8 pixels. */
export async function tfjsProbabilities(model: tf.LayersModel, input: PixelBatch, numClasses: number, batch = 16): Promise<number[][]> {
  const [n, h, w] = input.shape;
  const per = h * w * 3;
  const rows: number[][] = [];
  for (let s = 0; s < n; s += batch) {
    const e = Math.min(n, s + batch);
    const out = tf.tidy(
      () => model.predict(tf.tensor4d(Float32Array.from(input.pixels.subarray(s * per, e * per)), [e - s, h, w, 3])) as tf.Tensor,
    );
    rows.push(...toClassProbabilities((await out.data()) as Float32Array, numClasses));
    out.dispose();
  }
  return rows;
}

const argmax = (row: number[]) => row.indexOf(Math.max(...row));

export function compareProbabilities(got: number[][], ref: number[][], labels: (number | undefined)[]) {
  if (got.length !== ref.length) throw new Error(`export: ${got.length} outputs for ${ref.length} images`);
  let maxAbsDiff = 0;
  let agree = 0;
  let labelled = 0;
  let correct = 0;
  let refCorrect = 0;
  got.forEach((row, i) => {
    if (row.length !== ref[i].length) throw new Error(`export: ${row.length} probabilities per image, expected ${ref[i].length}`);
    for (let j = 0; j < row.length; j++) {
      const d = Math.abs(row[j] - ref[i][j]);
      maxAbsDiff = Number.isNaN(d) ? Number.POSITIVE_INFINITY : Math.max(maxAbsDiff, d);
    }
    if (argmax(row) === argmax(ref[i])) agree++;
    const l = labels[i];
    if (l !== undefined) {
      labelled++;
      if (argmax(row) === l) correct++;
      if (argmax(ref[i]) === l) refCorrect++;
    }
  });
  return {
    maxAbsDiff,
    top1Agreement: got.length ? agree / got.length : 1,
    labelledImages: labelled,
    ...(labelled ? { accuracy: correct / labelled, referenceAccuracy: refCorrect / labelled } : {}),
  };
}

async function readExports(file: string, manifest: Manifest): Promise<ExportRecord[]> {
  try {
    const parsed = ExportsSchema.safeParse(JSON.parse(await readFile(file, 'utf8')));
    // Records of another model version (or an unreadable file) are replaced, not merged.
    return parsed.success && parsed.data.model.version === manifest.version ? parsed.data.exports : [];
  } catch {
    return [];
  }
}

async function writeAtomic(file: string, bytes: Uint8Array | string): Promise<void> {
  await mkdir(path.dirname(file), { recursive: true });
  const tmp = `${file}.tmp-${process.pid}`;
  await writeFile(tmp, bytes);
  await rename(tmp, file);
}

/**
 * Writes and verifies each format; a format that fails verification is not written. Throws after
 * the others are written (and recorded) when any failed, with the measured figures.
 */
export async function exportFormats(
  model: tf.LayersModel,
  manifest: Manifest,
  ids: readonly FormatId[],
  opts: ExportOptions,
): Promise<Exports> {
  const log = opts.log ?? (() => {});
  const writers = ids.map((id) => ({ id, writer: writerFor(id) }));
  for (const { id } of writers) {
    if (FORMATS[id].needsCalibration && !opts.calibration) throw new Error(`format '${id}' needs calibration images: give --data <folder>`);
  }
  const v = opts.verification;
  const fromVerification: LabelledPixels | undefined = v
    ? {
        pixels: new Uint8Array(Buffer.from(v.pixels, 'base64')),
        shape: v.shape as PixelBatch['shape'],
        // Accuracy is on the labelled data when given (verification.json's images are usually among them).
        labels: opts.data?.labels.length ? [] : v.labels,
        source: 'verification.json',
      }
    : undefined;
  const parts = [fromVerification, opts.data].filter((p): p is LabelledPixels => !!p && p.shape[0] > 0);
  const inputs = joinBatches(parts);
  if (!inputs) throw new Error('export: no images to verify on (verification.json is empty and no --data was given)');
  const labels = parts.flatMap((p) => (p.labels.length === p.shape[0] ? p.labels : Array.from({ length: p.shape[0] }, () => undefined)));
  const reference = await tfjsProbabilities(model, inputs, manifest.classes.length);
  const graph = fusedGraph(model);
  const ctx = {
    classes: manifest.classes,
    metadata: exportMetadata(manifest),
    calibration: opts.calibration,
    producerVersion: EDGETUNE_VERSION,
    model,
  };

  const exportsFile = path.join(opts.outDir, 'exports.json');
  const records = new Map((await readExports(exportsFile, manifest)).map((r) => [r.format, r]));
  const failures: string[] = [];
  for (const { id, writer } of writers) {
    const info = FORMATS[id];
    const files: ExportFile[] = await writer.write(graph, ctx);
    const got = await writer.verify(files, inputs);
    const cmp = compareProbabilities(got, reference, labels);
    const figures = `max |dp| ${cmp.maxAbsDiff.toExponential(2)}${info.tolerance !== undefined ? ` (tolerance ${info.tolerance})` : ''}, top-1 agreement ${(cmp.top1Agreement * 100).toFixed(1)}% on ${got.length} images${cmp.accuracy !== undefined ? `, accuracy ${cmp.accuracy.toFixed(4)} (tfjs ${cmp.referenceAccuracy?.toFixed(4)}) on ${cmp.labelledImages}` : ''}`;
    const ok = info.tolerance !== undefined ? cmp.maxAbsDiff <= info.tolerance && cmp.top1Agreement === 1 : true;
    if (!ok) {
      failures.push(`${id}: ${figures}`);
      log(`${id}: FAILED verification: ${figures}; not written`);
      continue;
    }
    for (const f of files) await writeAtomic(path.join(opts.outDir, f.path), f.bytes);
    const fileRecords = files.map((f) => ({ path: f.path, bytes: f.bytes.byteLength, sha256: sha256(f.bytes) }));
    records.set(id, {
      format: id,
      file: fileRecords[0].path,
      bytes: fileRecords.reduce((a, f) => a + f.bytes, 0),
      sha256: fileRecords[0].sha256,
      files: fileRecords,
      runtime: await writer.runtime(),
      weights: info.weights,
      ...(writer.latency ? { latencyMs: Math.round((await writer.latency(files, inputs)) * 100) / 100 } : {}),
      verification: { images: got.length, sources: parts.map((p) => p.source), tolerance: info.tolerance, ...cmp },
    });
    log(`${id}: ${fileRecords[0].path} ${(fileRecords[0].bytes / 1e6).toFixed(2)} MB, ${figures}`);
  }
  const result: Exports = ExportsSchema.parse({
    schemaVersion: 1,
    model: { name: manifest.name, version: manifest.version },
    edgetune: EDGETUNE_VERSION,
    exports: [...records.values()].sort((a, b) => a.format.localeCompare(b.format)),
  });
  await writeAtomic(exportsFile, `${JSON.stringify(result, null, 2)}\n`);
  if (failures.length) throw new Error(`export verification failed: ${failures.join('; ')}`);
  return result;
}

/**
 * The frozen part as a fused graph: image -> [boundary activation, pooled features]. For a classifier
 * the pooled features are its GlobalAveragePooling2D layer; for a bare base (no such layer) they are
 * the global average of the base's output, as an op named `pooled`.
 */
export function frozenGraph(model: tf.LayersModel, boundaryLayer: string): FusedGraph {
  const pools = model.layers.filter((l) => l.getClassName() === 'GlobalAveragePooling2D');
  if (pools.length > 1) throw new Error(`frozen export: expected one GlobalAveragePooling2D layer, found ${pools.length}`);
  if (pools.length === 1) {
    const pooled = pools[0].name;
    return subgraph(fusedGraph(model, { keep: [boundaryLayer, pooled] }), { outputs: [boundaryLayer, pooled] });
  }
  const top = model.outputLayers[0].name;
  const g = subgraph(fusedGraph(model, { keep: [boundaryLayer, top] }), { outputs: [boundaryLayer, top] });
  const topShape = g.ops.find((o) => o.out === top)?.shape ?? [];
  if (topShape.length !== 3) throw new Error(`frozen export: the model output '${top}' is not a feature map`);
  g.ops.push({ op: 'globalAveragePool', out: 'pooled', inputs: [top], layers: [], shape: [topShape[2]], keepDims: false });
  g.outputs = [boundaryLayer, 'pooled'];
  return g;
}

/**
 * ONNX of the frozen part (for the native engine): input as the classifier's (NHWC RGB 0..255), two
 * outputs named after the layers: the boundary activation (NHWC) and the pooled features [batch, C].
 */
export function exportFrozenOnnx(model: tf.LayersModel, boundaryLayer: string, opts: { weights?: 'float32' | 'float16' } = {}): Uint8Array {
  return writeOnnx(frozenGraph(model, boundaryLayer), {
    weights: opts.weights,
    graphName: 'edgetune_frozen',
    producerVersion: EDGETUNE_VERSION,
    metadata: {
      'edgetune.version': EDGETUNE_VERSION,
      'edgetune.boundary': boundaryLayer,
      'edgetune.input': 'image: NHWC float32 RGB 0..255',
    },
  });
}
