import type { LayersModel, Tensor } from '@tensorflow/tfjs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { initBackend } from '../core/backend.js';
import { buildClassifier } from '../core/classifier.js';
import { createFastForward } from '../core/fast-forward.js';
import { loadModelArtifacts } from '../core/file-io.js';
import { buildMobileNetV2 } from '../core/mobilenet-v2.js';
import { tf } from '../core/tf.js';
import { randomizeBatchNorm } from './helpers/fast-forward-fixtures.js';
import { hasWeights035, skipReason, WEIGHTS_0_35 } from './helpers/shared.js';

const BOUNDARY = 'block_13_expand_relu';

function maxAbsDiff(a: Tensor, b: Tensor): number {
  return tf.tidy(() => tf.max(tf.abs(tf.sub(a, b))).dataSync()[0]);
}

function layerOutput(model: LayersModel, name: string, x: Tensor): Tensor {
  const sub = tf.model({ inputs: model.inputs, outputs: model.getLayer(name).output as tf.SymbolicTensor });
  return sub.predict(x) as Tensor;
}

beforeAll(async () => {
  await initBackend('wasm', () => {});
});

describe('createFastForward on a random-weight classifier (alpha 0.35, 64x64, 3 classes)', () => {
  let model: LayersModel;
  let x: Tensor;
  beforeAll(() => {
    model = buildClassifier({ alpha: 0.35, inputSize: 64, numClasses: 3 });
    randomizeBatchNorm(model);
    x = tf.randomUniform([2, 64, 64, 3], 0, 255, 'float32', 7);
  });
  afterAll(() => {
    x.dispose();
    model.dispose();
  });

  it('equals model.predict (probabilities) within 1e-4 and does not leak', () => {
    const ff = createFastForward(model);
    const ref = model.predict(x) as Tensor;
    const before = tf.memory().numTensors;
    const got = ff.forward(x);
    expect(tf.memory().numTensors).toBe(before + 1);
    expect(got.shape).toEqual([2, 3]);
    expect(maxAbsDiff(ref, got)).toBeLessThan(1e-4);
    tf.dispose([ref, got]);
    ff.dispose();
  });

  it('folds BN/padding/ReLU6 into fused convolutions', () => {
    const ff = createFastForward(model);
    const plan = ff.describe({ to: BOUNDARY });
    expect(plan.some((l) => l.includes('Conv1_pad + Conv1 + bn_Conv1 + Conv1_relu'))).toBe(true);
    expect(plan.some((l) => l.includes('block_13_expand + block_13_expand_BN + block_13_expand_relu'))).toBe(true);
    expect(plan.at(-1)?.startsWith(BOUNDARY)).toBe(true);
    ff.dispose();
  });

  it('returns the boundary activation, and from the boundary reproduces the full output', () => {
    const ff = createFastForward(model);
    const pre = tf.tidy(() => x.div(127.5).sub(1));
    const sub = tf.model({ inputs: model.inputs, outputs: model.getLayer(BOUNDARY).output as tf.SymbolicTensor });
    const refBoundary = sub.predict(x) as Tensor;
    const boundary = ff.forward(x, { to: BOUNDARY });
    expect(boundary.shape).toEqual(refBoundary.shape);
    expect(maxAbsDiff(refBoundary, boundary)).toBeLessThan(1e-4);
    const tail = ff.forward(boundary, { from: BOUNDARY });
    const full = model.predict(x) as Tensor;
    expect(maxAbsDiff(full, tail)).toBeLessThan(1e-4);
    // An intermediate layer that would otherwise be fused away is still reachable.
    const bn = ff.forward(x, { to: 'block_13_expand_BN' });
    const refBn = layerOutput(model, 'block_13_expand_BN', x);
    expect(maxAbsDiff(refBn, bn)).toBeLessThan(1e-4);
    tf.dispose([pre, refBoundary, boundary, tail, full, bn, refBn]);
    ff.dispose();
  });

  it('rejects unknown layers and starts that cannot reach the target', () => {
    const ff = createFastForward(model);
    expect(() => ff.forward(x, { to: 'nope' })).toThrow(/not in the model/);
    const mid = ff.forward(x, { to: 'block_2_project_BN' });
    // block_2_add also needs block_1's output, which is not computed from block_2_project_BN.
    expect(() => ff.forward(mid, { from: 'block_2_project_BN', to: 'block_2_add' })).toThrow(/depends on the model input|not computed/);
    mid.dispose();
    ff.dispose();
  });

  it('frees its folded weights on dispose', () => {
    const before = tf.memory().numTensors;
    const ff = createFastForward(model);
    ff.forward(x, { to: BOUNDARY }).dispose();
    expect(tf.memory().numTensors).toBeGreaterThan(before);
    ff.dispose();
    expect(tf.memory().numTensors).toBe(before);
  });
});

describe('createFastForward on a bare random-weight base', () => {
  it('applies x/127.5-1 itself (input RGB 0..255) and matches the base on preprocessed input', () => {
    const base = buildMobileNetV2({ alpha: 0.35, inputSize: 48 });
    randomizeBatchNorm(base, 11);
    const ff = createFastForward(base);
    const x = tf.randomUniform([1, 48, 48, 3], 0, 255, 'float32', 3);
    const pre = tf.tidy(() => x.div(127.5).sub(1));
    const ref = base.predict(pre) as Tensor;
    const got = ff.forward(x);
    expect(maxAbsDiff(ref, got)).toBeLessThan(1e-4);
    const raw = createFastForward(base, { inputRescale: 'none' });
    const got2 = raw.forward(pre);
    expect(maxAbsDiff(ref, got2)).toBeLessThan(1e-4);
    tf.dispose([x, pre, ref, got, got2]);
    ff.dispose();
    raw.dispose();
    base.dispose();
  });
});

describe.skipIf(!hasWeights035)('createFastForward with the shared ImageNet weights (alpha 0.35, 96x96)', () => {
  if (!hasWeights035) console.log(skipReason('weights/mobilenet_v2_0.35_224_imagenet'));
  it('equals the layers model at the boundary and at out_relu within 1e-4', async () => {
    const artifacts = await loadModelArtifacts(WEIGHTS_0_35);
    const topology = artifacts.modelTopology as { config: { layers: { config: { batch_input_shape?: unknown } }[] } };
    topology.config.layers[0].config.batch_input_shape = [null, 96, 96, 3];
    const base = await tf.loadLayersModel(tf.io.fromMemory(artifacts));
    const ff = createFastForward(base);
    const x = tf.randomUniform([2, 96, 96, 3], 0, 255, 'float32', 5);
    const pre = tf.tidy(() => x.div(127.5).sub(1));
    const ref = base.predict(pre) as Tensor;
    const got = ff.forward(x);
    expect(maxAbsDiff(ref, got)).toBeLessThan(1e-4);
    const refB = layerOutput(base, BOUNDARY, pre);
    const gotB = ff.forward(x, { to: BOUNDARY });
    expect(maxAbsDiff(refB, gotB)).toBeLessThan(1e-4);
    tf.dispose([x, pre, ref, got, refB, gotB]);
    ff.dispose();
    base.dispose();
  });
});
