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
}

function rng(seed: number): () => number {
  let s = seed >>> 0 || 1;
  return () => {
    s ^= s << 13;
    s ^= s >>> 17;
    s ^= s << 5;
    return (s >>> 0) / 2 ** 32;
  };
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
    await model.save(tf.io.withSaveHandler((a) => saveModelArtifacts(dir, a)));
    const pixels = new Uint8Array(samples * inputSize * inputSize * 3);
    for (let i = 0; i < pixels.length; i++) pixels[i] = Math.floor(random() * 256);
    const out = tf.tidy(() => model.predict(tf.tensor4d(pixels, [samples, inputSize, inputSize, 3], 'int32').toFloat()) as tf.Tensor);
    const probabilities = toClassProbabilities(await out.data() as Float32Array, classes.length);
    out.dispose();
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
