import { readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { buildClassifier, toClassProbabilities } from '../../core/classifier.js';
import { saveModelArtifacts } from '../../core/file-io.js';
import { type Manifest, ManifestSchema, type Verification } from '../../core/manifest.js';
import { tf } from '../../core/tf.js';
import { sha256 } from '../../core/versioning.js';

export interface ModelDirOptions {
  classes?: string[];
  inputSize?: number;
  valAccuracy?: number;
  alpha?: number;
  /** Number of verification samples. */
  samples?: number;
  seed?: number;
  name?: string;
  /** Sets the model's weights instead of the seeded random draw and BatchNorm calibration (e.g. real base weights and a fitted head). */
  adjust?: (model: tf.LayersModel) => Promise<void>;
}

export function rng(seed: number): () => number {
  let s = seed >>> 0 || 1;
  return () => {
    s ^= s << 13;
    s ^= s >>> 17;
    s ^= s << 5;
    return (s >>> 0) / 2 ** 32;
  };
}

/**
 * A randomly initialised MobileNetV2 in inference mode (BN moving mean 0, variance 1) shrinks its
 * activations to ~1e-13 by the last block, so every input gets probability 0.5. Setting each BN
 * layer's moving statistics to the batch statistics of its input (what training would have left
 * there) gives a model whose outputs depend on the input, which the publish checks need.
 */
function calibrateBatchNorm(model: tf.LayersModel, inputSize: number, random: () => number): void {
  // tfjs initializers are not seedable from here: redraw every non-BN weight from the seeded
  // generator at the scale tfjs chose, so a seed always gives the same model.
  for (const layer of model.layers) {
    if (layer.getClassName() === 'BatchNormalization') continue;
    const ws = layer.getWeights();
    if (!ws.length) continue;
    const redrawn = ws.map((w) => {
      if (w.rank < 2) return tf.zeros(w.shape);
      // Glorot-uniform limit from the shape, as tfjs' default initializer uses.
      const receptive = w.shape.slice(0, -2).reduce((a, b) => a * b, 1);
      const limit = Math.sqrt(6 / (receptive * (w.shape[w.rank - 2] + w.shape[w.rank - 1])));
      const vals = new Float32Array(w.size).map(() => (random() * 2 - 1) * limit);
      return tf.tensor(vals, w.shape, 'float32');
    });
    layer.setWeights(redrawn);
    tf.dispose(redrawn);
  }
  const n = 8;
  const pixels = new Float32Array(n * inputSize * inputSize * 3).map(() => Math.floor(random() * 256));
  const x = tf.tensor4d(pixels, [n, inputSize, inputSize, 3]);
  for (const layer of model.layers) {
    if (layer.getClassName() !== 'BatchNormalization') continue;
    const [gamma, beta] = layer.getWeights();
    const stats = tf.tidy(() => {
      const sub = tf.model({ inputs: model.inputs, outputs: layer.input as tf.SymbolicTensor });
      const { mean, variance } = tf.moments(sub.predict(x) as tf.Tensor, [0, 1, 2]);
      // The eps keeps near-dead channels from being blown up into noise amplifiers.
      return [mean, variance.add(variance.mean().mul(0.1)).add(1e-3)];
    });
    layer.setWeights([gamma, beta, ...stats]);
    tf.dispose(stats);
  }
  x.dispose();
}

/**
 * Writes a complete model directory like training produces (model.json, weights.bin,
 * manifest.json passing ManifestSchema with weights.bin's sha256, verification.json with the
 * model's own probabilities) for a small randomly initialised classifier. Needs a tf backend.
 */
export async function makeModelDir(dir: string, opts: ModelDirOptions = {}): Promise<string> {
  const classes = opts.classes ?? ['alpaca', 'not_alpaca'];
  const inputSize = opts.inputSize ?? 32;
  const samples = opts.samples ?? 6;
  const random = rng(opts.seed ?? 42);
  const model = buildClassifier({ alpha: opts.alpha ?? 0.35, inputSize, numClasses: classes.length });
  try {
    if (opts.adjust) await opts.adjust(model);
    else calibrateBatchNorm(model, inputSize, random);
    await model.save(tf.io.withSaveHandler((a) => saveModelArtifacts(dir, a)));
    // Draw 4x the samples and keep those nearest p = 0.2 / 0.8: sensitive enough that a wrong
    // weight shows in the probabilities, far enough from 0.5 that float16 noise cannot flip a label.
    const per = inputSize * inputSize * 3;
    const candidates = new Uint8Array(4 * samples * per);
    for (let i = 0; i < candidates.length; i++) candidates[i] = Math.floor(random() * 256);
    const out = tf.tidy(
      () => model.predict(tf.tensor4d(candidates, [4 * samples, inputSize, inputSize, 3], 'int32').toFloat()) as tf.Tensor,
    );
    const all = toClassProbabilities((await out.data()) as Float32Array, classes.length);
    out.dispose();
    const margin = (row: number[]) => Math.max(...row) - Math.min(...row);
    const order = all
      .map((_, i) => i)
      .sort((a, b) => Math.abs(margin(all[a]) - 0.6) - Math.abs(margin(all[b]) - 0.6))
      .slice(0, samples)
      .sort((a, b) => a - b);
    const pixels = new Uint8Array(samples * per);
    order.forEach((idx, k) => {
      pixels.set(candidates.subarray(idx * per, (idx + 1) * per), k * per);
    });
    const probabilities = order.map((idx) => all[idx]);
    const verification: Verification = {
      shape: [samples, inputSize, inputSize, 3],
      pixels: Buffer.from(pixels).toString('base64'),
      // Labels = the model's own argmax, so accuracy on these samples is 1 for the float model.
      labels: probabilities.map((row) => row.indexOf(Math.max(...row))),
      probabilities,
    };
    await writeFile(path.join(dir, 'verification.json'), JSON.stringify(verification));
  } finally {
    model.dispose();
  }
  const weights = await readFile(path.join(dir, 'weights.bin'));
  const valAccuracy = opts.valAccuracy ?? 0.9;
  const metrics = {
    valAccuracy,
    valLoss: 0.3,
    perClass: classes.map((label) => ({ label, precision: valAccuracy, recall: valAccuracy, support: 10 })),
    confusion: classes.map((_, i) => classes.map((__, j) => (i === j ? 9 : 1))),
  };
  const manifest: Manifest = {
    schemaVersion: 1,
    name: opts.name ?? 'test-model',
    version: `local-${sha256(weights).slice(0, 8)}`,
    createdAt: new Date().toISOString(),
    classes,
    output: classes.length === 2 ? 'sigmoid' : 'softmax',
    input: { size: inputSize, channels: 3, resize: 'stretch' },
    preprocessing: { scale: 1 / 127.5, offset: -1, inModel: true },
    backbone: { arch: 'mobilenet_v2', alpha: opts.alpha ?? 0.35, weights: { source: 'random', kind: 'random-init' }, fineTuneAt: 100 },
    hyperparameters: {},
    dataset: {
      source: 'generated',
      fingerprint: 'test',
      counts: { train: 40, validation: 20, perClass: Object.fromEntries(classes.map((c) => [c, 30])) },
      skipped: [],
    },
    history: [],
    metrics: { frozen: metrics },
    timings: {},
    backend: tf.getBackend(),
    files: [{ path: 'weights.bin', bytes: weights.byteLength, sha256: sha256(weights) }],
  };
  ManifestSchema.parse(manifest);
  await writeFile(path.join(dir, 'manifest.json'), JSON.stringify(manifest, null, 2));
  return dir;
}
