// The naive pipeline, for comparison: the same classifier trained with tfjs' own fit machinery
// (trainOnBatch on augmented images, no cache), timed for one step of each phase and
// extrapolated to the full run. Prints one JSON line.
import { initBackend } from '../core/backend.js';
import { buildClassifier, HEAD } from '../core/classifier.js';
import { tf } from '../core/tf.js';
import { applyBaseWeights, readBaseWeights } from '../core/weights/index.js';
import { applyAugmentation, drawAugmentation } from '../training/augment.js';
import { decodeFiles, listDataset, splitDataset } from '../training/dataset.js';
import { KERAS_RECIPE } from '../training/options.js';
import { createRng } from '../training/rng.js';
import { registerWasmGradKernels } from '../training/wasm-kernels/wasm-grad-kernels.js';

const [data, weights, sizeArg, batchArg] = process.argv.slice(2);
const size = Number(sizeArg ?? KERAS_RECIPE.imageSize);
const batch = Number(batchArg ?? KERAS_RECIPE.batchSize);
const backend = await initBackend('wasm', () => {});
registerWasmGradKernels();

const listing = await listDataset(data);
const split = splitDataset(listing, { validationSplit: 0.2, seed: 42 });
const t0 = performance.now();
const decoded = await decodeFiles([...split.train, ...split.validation], { size });
const decodeSeconds = (performance.now() - t0) / 1000;
const base = await readBaseWeights(weights, () => {});
const model = buildClassifier({ alpha: base.alpha, inputSize: size, numClasses: 2 });
applyBaseWeights(model, base.weights, weights);
const logitsModel = tf.model({ inputs: model.inputs, outputs: model.getLayer(HEAD.logits).output as tf.SymbolicTensor });

const rng = createRng(1);
const imgs = decoded.images.slice(0, batch);
const x = tf.tensor4d(Float32Array.from(imgs.flatMap((im) => Array.from(applyAugmentation(im, drawAugmentation(KERAS_RECIPE, rng))))), [
  imgs.length,
  size,
  size,
  3,
]);
const y = tf.tensor2d(
  imgs.map((i) => [i.file.label]),
  [imgs.length, 1],
);
const loss = (yt: tf.Tensor, yp: tf.Tensor) => tf.losses.sigmoidCrossEntropy(yt, yp);

async function timeStep(): Promise<number> {
  const t = performance.now();
  await logitsModel.trainOnBatch(x, y);
  return (performance.now() - t) / 1000;
}

// Phase 1: the base frozen (its layers not trainable), head trains.
const firstHead = model.layers.findIndex((l) => l.name === HEAD.pool);
model.layers.forEach((l, i) => {
  l.trainable = i >= firstHead;
});
logitsModel.compile({ optimizer: tf.train.adam(KERAS_RECIPE.lr), loss });
await timeStep();
const frozenStep = await timeStep();

// Phase 2: unfreeze from Keras base layer 120 (classifier index 121: `image` and `preprocess` come first).
model.layers.forEach((l, i) => {
  l.trainable = i >= KERAS_RECIPE.fineTuneAt + 1;
});
logitsModel.compile({ optimizer: tf.train.adam(KERAS_RECIPE.fineTuneLr), loss });
let fineStep: number;
let note = '';
try {
  fineStep = await timeStep();
} catch (e) {
  note = `phase-2 step at batch ${batch} failed: ${(e as Error).message}`;
  fineStep = Number.NaN;
}
const t1 = performance.now();
tf.tidy(() => model.predict(tf.slice(x, 0, Math.min(8, imgs.length))));
const evalPerImage = (performance.now() - t1) / 1000 / Math.min(8, imgs.length);

const epochs1 = KERAS_RECIPE.epochs;
const epochs2 = KERAS_RECIPE.fineTuneEpochs;
const evalSeconds = (epochs1 + epochs2) * split.validation.length * evalPerImage;
// A step at a smaller batch (the WASM heap cannot hold batch 32 for alpha 1.0) is scaled to batch 32.
const scale = KERAS_RECIPE.batchSize / batch;
const stepsAt32 = Math.ceil(split.train.length / KERAS_RECIPE.batchSize);
const estimate = decodeSeconds + (epochs1 * stepsAt32 * frozenStep + epochs2 * stepsAt32 * fineStep) * scale + evalSeconds;
process.stdout.write(
  `${JSON.stringify({
    backend: backend.name,
    size,
    batch,
    decodeSeconds,
    frozenStepSeconds: frozenStep,
    fineTuneStepSeconds: fineStep,
    evalSecondsPerImage: evalPerImage,
    stepsPerEpoch: stepsAt32,
    estimatedTotalSeconds: estimate,
    estimatedFrozenSeconds: epochs1 * stepsAt32 * frozenStep * scale,
    estimatedFineTuneSeconds: epochs2 * stepsAt32 * fineStep * scale,
    note,
  })}\n`,
);
