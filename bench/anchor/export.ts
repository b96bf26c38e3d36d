// What the PyTorch side of the anchor benchmark reads, written by our own code: the base weights as
// our loader matched them (Keras names, float32), the dataset split of a seed (training/dataset.ts),
// and decoded pixels plus our tfjs model's outputs on them (the conversion check).
import { readFile, writeFile } from 'node:fs/promises';
import { decodeImage } from '../../core/image.js';
import { buildMobileNetV2 } from '../../core/mobilenet-v2.js';
import { tf } from '../../core/tf.js';
import { applyBaseWeights, readBaseWeights } from '../../core/weights/index.js';
import { listDataset, splitDataset } from '../../training/dataset.js';

export interface WeightsIndex {
  source: string;
  alpha: number;
  top: boolean;
  /** `<layer>/<weight>` (Keras names), shape in the Keras layout, offset in float32 elements of the .bin file. */
  tensors: { name: string; shape: number[]; offset: number }[];
}

/** Writes `<prefix>.json` (WeightsIndex) and `<prefix>.bin` (float32 little-endian, in index order). */
export async function exportWeights(source: string, prefix: string): Promise<WeightsIndex> {
  const w = await readBaseWeights(source, () => {});
  const tensors: WeightsIndex['tensors'] = [];
  let offset = 0;
  for (const [name, a] of w.weights) {
    tensors.push({ name, shape: a.shape, offset });
    offset += a.values.length;
  }
  const all = new Float32Array(offset);
  for (const [i, a] of [...w.weights.values()].entries()) all.set(a.values, tensors[i].offset);
  const index: WeightsIndex = { source, alpha: w.alpha, top: w.top, tensors };
  await writeFile(`${prefix}.bin`, new Uint8Array(all.buffer));
  await writeFile(`${prefix}.json`, JSON.stringify(index));
  return index;
}

export interface SplitFile {
  root: string;
  seed: number;
  validationSplit: number;
  stratified: boolean;
  classes: string[];
  train: { path: string; label: number }[];
  validation: { path: string; label: number }[];
}

/** The split a training run with this seed uses (listDataset + splitDataset), as absolute paths. */
export async function exportSplit(
  dataDir: string,
  opts: { seed: number; validationSplit: number; stratified: boolean },
  file?: string,
): Promise<SplitFile> {
  const listing = await listDataset(dataDir);
  const split = splitDataset(listing, opts);
  const rows = (fs: typeof split.train) => fs.map((f) => ({ path: f.absPath, label: f.label }));
  const out: SplitFile = {
    root: listing.root,
    ...opts,
    classes: listing.classes,
    train: rows(split.train),
    validation: rows(split.validation),
  };
  if (file) await writeFile(file, JSON.stringify(out));
  return out;
}

/** Decodes the files with the training/serving preprocessing (sharp) into one uint8 NHWC array. */
export async function decodePixels(paths: string[], size: number): Promise<Uint8Array> {
  const out = new Uint8Array(paths.length * size * size * 3);
  for (const [i, p] of paths.entries()) {
    const img = await decodeImage(await readFile(p), { size });
    out.set(img.data, i * size * size * 3);
  }
  return out;
}

export interface TfjsReference {
  /** GlobalAveragePooling of out_relu, [n, channels] row-major. */
  pooled: Float32Array;
  channels: number;
  /** ImageNet logits (before softmax), [n, 1000]; only when the weights have the top. */
  logits?: Float32Array;
}

/**
 * Our tfjs MobileNetV2 (the backend initialised by the caller) with the weights applied by
 * applyBaseWeights, on the pixels scaled as the classifier does (x / 127.5 - 1).
 */
export async function tfjsReference(source: string, pixels: Uint8Array, size: number): Promise<TfjsReference> {
  const w = await readBaseWeights(source, () => {});
  const model = buildMobileNetV2({ alpha: w.alpha, inputSize: size, includeTop: false });
  applyBaseWeights(model, w.weights);
  const n = pixels.length / (size * size * 3);
  const out = tf.tidy(() => {
    const x = tf.sub(tf.mul(tf.tensor4d(pixels, [n, size, size, 3], 'int32').toFloat(), 1 / 127.5), 1);
    const pooled = tf.mean(model.predict(x) as tf.Tensor4D, [1, 2]) as tf.Tensor2D;
    const k = w.weights.get('predictions/kernel');
    const b = w.weights.get('predictions/bias');
    const logits =
      k && b ? tf.add(tf.matMul(pooled, tf.tensor2d(k.values, k.shape as [number, number])), tf.tensor1d(b.values)) : undefined;
    return { pooled, logits };
  });
  const ref: TfjsReference = { pooled: out.pooled.dataSync() as Float32Array, channels: out.pooled.shape[1] };
  if (out.logits) ref.logits = out.logits.dataSync() as Float32Array;
  tf.dispose([out.pooled, out.logits]);
  model.dispose();
  return ref;
}
