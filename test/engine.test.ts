// The two inference engines (core/engine) against each other: onnxruntime-node on the ONNX of the
// fused graph vs tfjs' fused WASM executor, per layer type on small random-weight models, and on
// real photos with the ImageNet base at 224 (boundary activations and pooled features).
import { readdir, readFile } from 'node:fs/promises';
import path from 'node:path';
import type { LayersModel } from '@tensorflow/tfjs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { initBackend } from '../core/backend.js';
import { buildClassifier } from '../core/classifier.js';
import { createEngine, type EngineOutput, resolveEngine } from '../core/engine/engine.js';
import { loadModelArtifacts } from '../core/file-io.js';
import { decodeImage } from '../core/image.js';
import { tf } from '../core/tf.js';
import { fromFloat16, toFloat16 } from '../training/workers/boundary-float16.js';
import { baseFromWeights, createBoundaryRunner, createEngineBoundaryRunner } from '../training/workers/boundary-runner.js';
import { randomizeBatchNorm } from './helpers/fast-forward-fixtures.js';
import { ALPACA_DIR, hasAlpaca, hasWeights10, skipReason, WEIGHTS_1_0 } from './helpers/shared.js';

/** Stated tolerances (float32 kernels summing in other orders). Measured here: boundary 2.3e-5, pooled 1.8e-5. */
const TOL_LAYER = 1e-5; // relative to the largest |activation| of the small single-layer-type models
const TOL_BOUNDARY = 1e-4; // absolute, block_13_expand_relu (values 0..6) on real photos
const TOL_POOLED = 5e-5; // absolute, pooled features (mean of out_relu) on real photos

function maxAbsDiff(a: Float32Array, b: Float32Array): number {
  expect(a.length).toBe(b.length);
  let d = 0;
  for (let i = 0; i < a.length; i++) d = Math.max(d, Math.abs(a[i] - b[i]));
  return d;
}
const maxAbs = (a: Float32Array) => a.reduce((m, v) => Math.max(m, Math.abs(v)), 0);

function seededPixels(n: number, size: number, seed: number): Float32Array {
  let s = seed >>> 0;
  return new Float32Array(n * size * size * 3).map(() => {
    s = (s * 1664525 + 1013904223) >>> 0;
    return s % 256;
  });
}

async function bothEngines(
  model: LayersModel,
  outputs: string[],
  pixels: Float32Array,
  n: number,
): Promise<[EngineOutput[], EngineOutput[]]> {
  const wasm = await createEngine(model, 'wasm', { outputs });
  const ort = await createEngine(model, 'ort', { outputs });
  try {
    expect(ort.outputShapes).toEqual(wasm.outputShapes);
    return [await wasm.run(pixels, n), await ort.run(pixels, n)];
  } finally {
    await wasm.dispose();
    await ort.dispose();
  }
}

/** Sets every weight of the model to seeded random values (BN statistics far from identity). */
function randomize(model: LayersModel, seed: number): void {
  for (const [i, layer] of model.layers.entries()) {
    const ws = layer.getWeights();
    if (!ws.length || layer.getClassName() === 'BatchNormalization') continue;
    const values = ws.map((w, k) => tf.randomUniform(w.shape, -0.5, 0.5, 'float32', seed + i * 7 + k));
    layer.setWeights(values);
    tf.dispose(values);
  }
  randomizeBatchNorm(model, seed);
}

beforeAll(async () => {
  await initBackend('wasm', () => {});
});

describe('engine selection', () => {
  it('resolves wasm, ort and auto (onnxruntime-node loads on this machine)', async () => {
    expect(await resolveEngine('wasm')).toEqual({ name: 'wasm' });
    expect(await resolveEngine('ort')).toEqual({ name: 'ort' });
    expect((await resolveEngine('auto')).name).toBe('ort');
  });
});

describe('ort vs wasm per layer type (random weights, 2 images)', () => {
  const size = 20;
  const input = () => tf.input({ shape: [size, size, 3] });
  const build = (f: (x: tf.SymbolicTensor) => tf.SymbolicTensor) => {
    const x = input();
    // The model's own preprocessing, as the classifier has it (a bare base gets it from the engine).
    const r = tf.layers.rescaling({ scale: 1 / 127.5, offset: -1 }).apply(x) as tf.SymbolicTensor;
    return tf.model({ inputs: x, outputs: f(r) });
  };
  const bn = () => tf.layers.batchNormalization({ epsilon: 1e-3 });
  const relu6 = () => tf.layers.reLU({ maxValue: 6 });
  const models: Record<string, () => LayersModel> = {
    'Conv2D same + BatchNorm + ReLU6': () =>
      build(
        (x) =>
          relu6().apply(
            bn().apply(tf.layers.conv2d({ filters: 8, kernelSize: 3, padding: 'same', useBias: false }).apply(x)),
          ) as tf.SymbolicTensor,
      ),
    'ZeroPadding2D + Conv2D stride 2 valid (Keras asymmetric padding) + ReLU': () =>
      build((x) => {
        const p = tf.layers
          .zeroPadding2d({
            padding: [
              [0, 1],
              [0, 1],
            ],
          })
          .apply(x);
        return tf.layers
          .reLU()
          .apply(tf.layers.conv2d({ filters: 8, kernelSize: 3, strides: 2, padding: 'valid' }).apply(p)) as tf.SymbolicTensor;
      }),
    'DepthwiseConv2D stride 2 same + BatchNorm + ReLU6': () =>
      build(
        (x) =>
          relu6().apply(
            bn().apply(tf.layers.depthwiseConv2d({ kernelSize: 3, strides: 2, padding: 'same', useBias: false }).apply(x)),
          ) as tf.SymbolicTensor,
      ),
    'Conv2D 1x1 linear projection + Add (residual)': () =>
      build((x) => {
        const y = bn().apply(tf.layers.conv2d({ filters: 3, kernelSize: 1, useBias: false }).apply(x)) as tf.SymbolicTensor;
        return tf.layers.add().apply([x, y]) as tf.SymbolicTensor;
      }),
    'GlobalAveragePooling2D + Dense softmax': () =>
      build((x) => {
        const c = tf.layers.conv2d({ filters: 6, kernelSize: 3, activation: 'relu' }).apply(x);
        const p = tf.layers.globalAveragePooling2d({}).apply(c);
        return tf.layers.dense({ units: 4, activation: 'softmax' }).apply(p) as tf.SymbolicTensor;
      }),
  };
  for (const [name, make] of Object.entries(models)) {
    it(name, async () => {
      const model = make();
      randomize(model, 11);
      const out = model.outputLayers[0].name;
      const px = seededPixels(2, size, 5);
      const [w, o] = await bothEngines(model, [out], px, 2);
      expect(o[0].dims).toEqual(w[0].dims);
      const ref = tf.tidy(() => (model.predict(tf.tensor4d(px, [2, size, size, 3])) as tf.Tensor).dataSync() as Float32Array);
      const scale = Math.max(1, maxAbs(ref));
      expect(maxAbsDiff(w[0].data, ref) / scale).toBeLessThan(TOL_LAYER);
      expect(maxAbsDiff(o[0].data, ref) / scale).toBeLessThan(TOL_LAYER);
      model.dispose();
    });
  }

  it('a MobileNetV2 classifier (alpha 0.35, 64x64, 3 classes, every layer type) gives the same probabilities', async () => {
    const model = buildClassifier({ alpha: 0.35, inputSize: 64, numClasses: 3 });
    randomizeBatchNorm(model);
    const px = seededPixels(3, 64, 9);
    const before = tf.memory().numTensors;
    const [w, o] = await bothEngines(model, [model.outputLayers[0].name], px, 3);
    expect(tf.memory().numTensors).toBe(before);
    expect(o[0].dims).toEqual([3, 3]);
    expect(maxAbsDiff(w[0].data, o[0].data)).toBeLessThan(1e-5);
    model.dispose();
  });

  it('returns a subset of its outputs in the order asked (onnxruntime-node names fetched values by position)', async () => {
    const model = buildClassifier({ alpha: 0.35, inputSize: 64, numClasses: 2 });
    randomizeBatchNorm(model);
    const outputs = ['block_13_expand_relu', 'out_relu'];
    const px = seededPixels(1, 64, 4);
    for (const name of ['wasm', 'ort'] as const) {
      const e = await createEngine(model, name, { outputs });
      const all = await e.run(px, 1);
      const [top] = await e.run(px, 1, ['out_relu']);
      const [back, bottom] = await e.run(px, 1, ['out_relu', 'block_13_expand_relu']);
      expect(top.dims).toEqual([1, 2, 2, 1280]);
      expect(Array.from(top.data)).toEqual(Array.from(all[1].data));
      expect(Array.from(back.data)).toEqual(Array.from(all[1].data));
      expect(Array.from(bottom.data)).toEqual(Array.from(all[0].data));
      await expect(e.run(px, 1, ['Conv1'])).rejects.toThrow(/not one of its outputs/);
      await e.dispose();
    }
    model.dispose();
  });

  it('runs the same ONNX session bit for bit on the same input twice', async () => {
    const model = buildClassifier({ alpha: 0.35, inputSize: 64, numClasses: 2 });
    randomizeBatchNorm(model);
    const ort = await createEngine(model, 'ort', { outputs: ['block_13_expand_relu', 'out_relu'] });
    model.dispose();
    const px = seededPixels(2, 64, 3);
    const [a, b] = [await ort.run(px, 2), await ort.run(px, 2)];
    expect(Buffer.from(a[0].data.buffer).equals(Buffer.from(b[0].data.buffer))).toBe(true);
    expect(Buffer.from(a[1].data.buffer).equals(Buffer.from(b[1].data.buffer))).toBe(true);
    await ort.dispose();
  });
});

if (!hasWeights10 || !hasAlpaca) console.warn(skipReason('the ImageNet alpha 1.0 weights or the alpaca photos'));
describe.skipIf(!hasWeights10 || !hasAlpaca)('ort vs wasm on real photos, ImageNet alpha 1.0 at 224', () => {
  let model: LayersModel;
  let pixels: Float32Array;
  const n = 6;
  beforeAll(async () => {
    const a = await loadModelArtifacts(WEIGHTS_1_0);
    model = baseFromWeights({ weightSpecs: a.weightSpecs ?? [], weightData: a.weightData as ArrayBuffer }, { alpha: 1, inputSize: 224 });
    const files: string[] = [];
    for (const cls of ['alpaca', 'not_alpaca'])
      files.push(
        ...(await readdir(path.join(ALPACA_DIR, cls)))
          .sort()
          .slice(0, n / 2)
          .map((f) => path.join(ALPACA_DIR, cls, f)),
      );
    pixels = new Float32Array(n * 224 * 224 * 3);
    for (const [i, f] of files.entries()) pixels.set((await decodeImage(await readFile(f), { size: 224 })).data, i * 224 * 224 * 3);
  }, 60_000);
  afterAll(() => model?.dispose());

  it(`boundary activations within ${TOL_BOUNDARY} and pooled features within ${TOL_POOLED}`, async () => {
    const [w, o] = await bothEngines(model, ['block_13_expand_relu', 'out_relu'], pixels, n);
    expect(o[0].dims).toEqual([n, 14, 14, 576]);
    const boundary = maxAbsDiff(w[0].data, o[0].data);
    const pool = (d: Float32Array) => {
      const c = 1280;
      const hw = 49;
      const out = new Float32Array(n * c);
      for (let i = 0; i < n; i++)
        for (let p = 0; p < hw; p++) for (let ch = 0; ch < c; ch++) out[i * c + ch] += d[(i * hw + p) * c + ch] / hw;
      return out;
    };
    const pooled = maxAbsDiff(pool(w[1].data), pool(o[1].data));
    console.log(
      `engine exactness, ${n} alpaca photos at 224: boundary max |diff| ${boundary.toExponential(2)}, pooled ${pooled.toExponential(2)}`,
    );
    expect(maxAbs(w[0].data)).toBeGreaterThan(1); // real activations, not a dead network
    expect(boundary).toBeLessThan(TOL_BOUNDARY);
    expect(pooled).toBeLessThan(TOL_POOLED);
  }, 60_000);

  it(`the boundary runners of both engines on augmented views of the photos: float32 within ${TOL_BOUNDARY}, float16 within one step`, async () => {
    const a = await loadModelArtifacts(WEIGHTS_1_0);
    const weights = { weightSpecs: a.weightSpecs ?? [], weightData: a.weightData as ArrayBuffer };
    const opts = { alpha: 1, inputSize: 224 };
    const wasm = createBoundaryRunner(weights, opts);
    const ort = await createEngineBoundaryRunner(weights, { ...opts, engine: 'ort' });
    try {
      const bytes = Uint8Array.from(pixels);
      const draws = Array.from({ length: n }, (_, i) => ({
        flipH: i % 2 === 0,
        flipV: false,
        angle: (i - 2.5) * 0.08,
        zoom: 1,
        contrast: 1,
      }));
      const job = { pixels: bytes, views: draws };
      const [w32, o32] = [await wasm.run(job, 'float32'), await ort.run(job, 'float32')];
      expect(maxAbsDiff(w32.data as Float32Array, o32.data as Float32Array)).toBeLessThan(TOL_BOUNDARY);
      const [w16, o16] = [await wasm.run(job, 'float16'), await ort.run(job, 'float16')];
      const [wf, of] = [fromFloat16(w16.data as Uint16Array), fromFloat16(o16.data as Uint16Array)];
      // float16 steps are 2^-8 at the top of 0..6: the engines may round to neighbouring halves.
      expect(maxAbsDiff(wf, of)).toBeLessThanOrEqual(2 ** -8);
      expect(Array.from(o16.data)).toEqual(Array.from(toFloat16(o32.data as Float32Array)));
    } finally {
      wasm.dispose();
      ort.dispose();
    }
  }, 60_000);
});
