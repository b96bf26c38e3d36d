// The tail's matrix products on onnxruntime (core/engine/ort-gemm.ts) against tfjs' own, and the
// fast tail with them against the tail on tfjs' products.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { initBackend } from '../core/backend.js';
import { buildClassifier } from '../core/classifier.js';
import {
  disposeOrtGemm,
  ORT_GEMM_KERNEL,
  ortGemm,
  ortGemmThreads,
  ortGemmUnavailable,
  setOrtGemmThreads,
} from '../core/engine/ort-gemm.js';
import type { LayersModel, Tensor, Tensor2D, Tensor4D } from '../core/tf.js';
import { tf } from '../core/tf.js';
import { createTrainingTail } from '../training/tail/parallel-tail.js';
import { createTail, type TailOptions } from '../training/tail/tail.js';
import { tailThreads } from '../training/train-phases.js';

const unavailable = ortGemmUnavailable();
if (unavailable) console.warn(`ort-gemm tests skipped: ${unavailable}`);

/** max |a - b| / max |b|. */
function relDiff(a: Tensor, b: Tensor): number {
  return tf.tidy(() => tf.max(tf.abs(tf.sub(a, b))).dataSync()[0] / Math.max(1e-12, tf.max(tf.abs(b)).dataSync()[0]));
}

beforeAll(async () => {
  await initBackend('wasm', () => {});
  tf.setBackend('wasm');
});
afterAll(() => disposeOrtGemm());

describe.skipIf(!!unavailable)('ortGemm (onnxruntime Gemm on the WASM heap)', () => {
  const [m, k, n] = [37, 53, 29];
  it('equals tfjs matMul for every transpose combination, with bias and ReLU6; same bits twice; no leaks', () => {
    const before = tf.memory().numTensors;
    tf.tidy(() => {
      const a = tf.randomNormal([m, k], 0, 1, 'float32', 1) as Tensor2D;
      const b = tf.randomNormal([k, n], 0, 1, 'float32', 2) as Tensor2D;
      const bias = tf.randomNormal([n], 0, 3, 'float32', 3) as tf.Tensor1D;
      const ref = tf.matMul(a, b);
      const at = tf.transpose(a) as Tensor2D;
      const bt = tf.transpose(b) as Tensor2D;
      expect(relDiff(ortGemm(a, b), ref)).toBeLessThan(1e-6);
      expect(relDiff(ortGemm(at, b, { transA: true }), ref)).toBeLessThan(1e-6);
      expect(relDiff(ortGemm(a, bt, { transB: true }), ref)).toBeLessThan(1e-6);
      expect(relDiff(ortGemm(at, bt, { transA: true, transB: true }), ref)).toBeLessThan(1e-6);
      const biased = tf.add(ref, bias);
      expect(relDiff(ortGemm(a, b, { bias }), biased)).toBeLessThan(1e-6);
      const r6 = ortGemm(a, b, { bias, activation: 'relu6' });
      expect(relDiff(r6, tf.clipByValue(biased, 0, 6))).toBeLessThan(1e-6);
      // The clip is real: values below 0 and above 6 occur before it.
      expect(tf.min(biased).dataSync()[0]).toBeLessThan(0);
      expect(tf.max(biased).dataSync()[0]).toBeGreaterThan(6);
      expect(Array.from(ortGemm(a, b, { bias }).dataSync())).toEqual(Array.from(ortGemm(a, b, { bias }).dataSync()));
    });
    expect(tf.memory().numTensors).toBe(before);
  });

  it('gives the same bits on one intra-op thread and on two (MLAS splits the output, not the sum)', () => {
    const saved = ortGemmThreads();
    try {
      tf.tidy(() => {
        // Large enough that onnxruntime splits the product between threads.
        const a = tf.randomNormal([784, 960], 0, 1, 'float32', 6) as Tensor2D;
        const b = tf.randomNormal([960, 160], 0, 1, 'float32', 7) as Tensor2D;
        const dz = tf.randomNormal([784, 160], 0, 1, 'float32', 8) as Tensor2D;
        const runs = [1, 2].map((t) => {
          setOrtGemmThreads(t);
          // The tail's three products: forward, input gradient (b^T), filter gradient (a^T).
          return [ortGemm(a, b), ortGemm(dz, b, { transB: true }), ortGemm(a, dz, { transA: true })].map((x) => Array.from(x.dataSync()));
        });
        for (let i = 0; i < 3; i++) expect(runs[1][i]).toEqual(runs[0][i]);
      });
    } finally {
      setOrtGemmThreads(saved);
    }
  });

  it('reads and writes the heap correctly after it grows', () => {
    tf.tidy(() => {
      const a = tf.randomNormal([m, k], 0, 1, 'float32', 4) as Tensor2D;
      const b = tf.randomNormal([k, n], 0, 1, 'float32', 5) as Tensor2D;
      const first = ortGemm(a, b);
      // 256 MB more than the heap held: WebAssembly memory grows and earlier views detach.
      const big = tf.zeros([64 * 1024 * 1024]);
      const second = ortGemm(a, b);
      big.dispose();
      expect(Array.from(second.dataSync())).toEqual(Array.from(first.dataSync()));
      expect(relDiff(second, tf.matMul(a, b))).toBeLessThan(1e-6);
    });
  });

  it('refuses operands that do not fit, saying which', () => {
    tf.tidy(() => {
      const a = tf.ones([3, 4]) as Tensor2D;
      expect(() => ortGemm(a, tf.ones([5, 2]) as Tensor2D)).toThrow(/inner dimensions differ \(4 vs 5\)/);
      expect(() => ortGemm(a, tf.ones([4, 2]) as Tensor2D, { bias: tf.ones([3]) as tf.Tensor1D })).toThrow(/bias must be \[2\]/);
      expect(() => tf.engine().runKernel(ORT_GEMM_KERNEL, { a: tf.ones([1, 3, 4]), b: tf.ones([4, 2]) }, {})).toThrow(/2-D operands/);
    });
  });
});

describe.skipIf(!!unavailable)('fast tail with its products on onnxruntime', () => {
  const BASE: TailOptions = { fineTuneAt: 120, numClasses: 2, route: 'fast', dropout: 0 };
  let model: LayersModel;
  let boundaryShape: [number, number, number];
  beforeAll(() => {
    model = buildClassifier({ alpha: 0.35, inputSize: 96, numClasses: 2 });
    const probe = createTail(model, BASE);
    boundaryShape = probe.boundaryShape;
    probe.dispose();
  });
  afterAll(() => model?.dispose());

  it('gradients and loss equal the tail on tfjs products (within float32 summation order), in one thread and two', async () => {
    const wasm = createTail(model, BASE);
    const ort = createTail(model, { ...BASE, gemm: 'ort' });
    const par = await createTrainingTail(model, { ...BASE, gemm: 'ort' }, { threads: 2 });
    try {
      expect([wasm.gemm, ort.gemm, par.gemm]).toEqual(['wasm', 'ort', 'ort']);
      const b = tf.randomUniform([6, ...boundaryShape], 0, 6, 'float32', 9) as Tensor4D;
      const labels = tf.tensor1d([0, 1, 1, 0, 1, 0], 'int32');
      const before = tf.memory().numTensors;
      const w = wasm.computeGradients(b, labels);
      const o = ort.computeGradients(b, labels);
      const p = await par.computeGradients(b, labels);
      expect(Math.abs(o.loss - w.loss) / w.loss).toBeLessThan(1e-5);
      expect(o.correct).toBe(w.correct);
      for (let i = 0; i < w.grads.length; i++) {
        expect(relDiff(o.grads[i], w.grads[i]), wasm.variableNames[i]).toBeLessThan(1e-4);
        expect(relDiff(p.grads[i], w.grads[i]), wasm.variableNames[i]).toBeLessThan(1e-4);
      }
      tf.dispose([...w.grads, ...o.grads, ...p.grads]);
      expect(tf.memory().numTensors).toBe(before);
      // Reproducible: the same step twice gives the same bits.
      const again = ort.computeGradients(b, labels);
      const first = ort.computeGradients(b, labels);
      for (let i = 0; i < first.grads.length; i++)
        expect(Array.from(again.grads[i].dataSync())).toEqual(Array.from(first.grads[i].dataSync()));
      tf.dispose([...again.grads, ...first.grads, b, labels]);
    } finally {
      wasm.dispose();
      ort.dispose();
      await par.dispose();
    }
  });

  it('is refused where its products cannot run (the layers route)', () => {
    expect(() => createTail(model, { ...BASE, route: 'layers', gemm: 'ort' })).toThrow(/runs the fast tail's products on the wasm backend/);
  });
});

describe('tail threads', () => {
  it('all the workers on tfjs products; half of them with the products on onnxruntime', () => {
    expect(tailThreads(2, 'wasm')).toBe(2);
    expect(tailThreads(2, 'ort')).toBe(1);
    expect(tailThreads(4, 'ort')).toBe(2);
    expect(tailThreads(1, 'ort')).toBe(1);
    expect(tailThreads(0, 'wasm')).toBe(1);
  });
});
