import { readdirSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { initBackend } from '../core/backend.js';
import { buildClassifier } from '../core/classifier.js';
import type { LayersModel, Tensor, Tensor4D } from '../core/tf.js';
import { tf } from '../core/tf.js';
import { assignBatches, batchLogits, createTrainingTail, shardSizes } from '../training/tail/parallel-tail.js';
import { createTail, type TailOptions } from '../training/tail/tail.js';

const SIZE = 96;
const BASE: TailOptions = { fineTuneAt: 120, numClasses: 2, route: 'fast' };

/** max |a - b| / max |b|. */
function relDiff(a: Tensor | Float32Array, b: Tensor | Float32Array): number {
  return tf.tidy(() => {
    const [x, y] = [a, b].map((t) => (t instanceof tf.Tensor ? t : tf.tensor(t)));
    return tf.max(tf.abs(tf.sub(x, y))).dataSync()[0] / Math.max(1e-12, tf.max(tf.abs(y)).dataSync()[0]);
  });
}

/** |a - b| / |b|, with |b| floored: a saturated loss can be 0. */
function relNum(a: number, b: number): number {
  return Math.abs(a - b) / Math.max(Math.abs(b), 1e-6);
}

function values(vars: readonly tf.Variable[]): Float32Array[] {
  return vars.map((v) => v.dataSync().slice() as Float32Array);
}

/** Seeded weights for every layer (tfjs' default initialisers are unseeded), so each run tests the same model. */
function seedWeights(m: LayersModel, seed: number): void {
  let k = seed;
  for (const layer of m.layers) {
    for (const w of layer.weights) {
      const name = w.originalName;
      const shape = w.shape as number[];
      const fanIn = /depthwise_kernel/.test(name) ? shape[0] * shape[1] : shape.slice(0, -1).reduce((a, b) => a * b, 1);
      const a = Math.sqrt(3 / Math.max(1, fanIn));
      const value = tf.tidy(() => {
        if (/gamma|moving_variance/.test(name)) return tf.randomUniform(shape, 0.8, 1.2, 'float32', k++);
        if (/beta|moving_mean|bias/.test(name)) return tf.randomUniform(shape, -0.1, 0.1, 'float32', k++);
        return tf.randomUniform(shape, -a, a, 'float32', k++);
      });
      w.write(value);
      value.dispose();
    }
  }
}

let model: LayersModel;
let boundaryShape: [number, number, number];

function batch(n: number, seed: number, numClasses = 2): { b: Tensor4D; labels: Tensor } {
  return {
    b: tf.randomUniform([n, ...boundaryShape], 0, 6, 'float32', seed) as Tensor4D,
    labels: tf.tensor1d(
      Array.from({ length: n }, (_, i) => (i * 7 + seed) % numClasses),
      'int32',
    ),
  };
}

beforeAll(async () => {
  await initBackend('wasm', () => {});
  tf.setBackend('wasm');
  model = buildClassifier({ alpha: 0.35, inputSize: SIZE, numClasses: 2 });
  seedWeights(model, 5);
  const probe = createTail(model, BASE);
  boundaryShape = probe.boundaryShape;
  probe.dispose();
});

afterAll(() => model?.dispose());

describe('shardSizes', () => {
  it('splits a batch into near-equal shards, the remainder to the workers', () => {
    expect(shardSizes(32, 2)).toEqual([16, 16]);
    expect(shardSizes(5, 2)).toEqual([2, 3]);
    expect(shardSizes(1, 2)).toEqual([0, 1]);
    expect(shardSizes(7, 3)).toEqual([2, 2, 3]);
  });
});

describe('parallel tail (2 threads, worker thread with its own WASM)', () => {
  for (const n of [8, 5, 1]) {
    it(`batch ${n}: gradients, loss and SGD-updated weights equal the single-thread tail's (dropout 0)`, async () => {
      const single = createTail(model, { ...BASE, dropout: 0 });
      const par = await createTrainingTail(model, { ...BASE, dropout: 0 }, { threads: 2 });
      try {
        expect(par.threads).toBe(2);
        expect(par.variableNames).toEqual(single.variableNames);
        const { b, labels } = batch(n, n);
        const s = single.computeGradients(b, labels);
        const p = await par.computeGradients(b, labels);
        expect(relNum(p.loss, s.loss)).toBeLessThan(1e-5);
        expect(p.correct).toBe(s.correct);
        expect(p.grads.length).toBe(s.grads.length);
        for (let i = 0; i < s.grads.length; i++) {
          expect(p.grads[i].shape).toEqual(s.grads[i].shape);
          expect(relDiff(p.grads[i], s.grads[i]), par.variableNames[i]).toBeLessThan(1e-5);
        }
        tf.dispose([...s.grads, ...p.grads]);

        const before = values(single.trainableVariables);
        const optS = tf.train.sgd(0.1);
        const optP = tf.train.sgd(0.1);
        for (let step = 0; step < 2; step++) {
          const rs = single.trainStep(b, labels, optS);
          const rp = await par.trainStep(b, labels, optP);
          expect(relNum(rp.loss, rs.loss)).toBeLessThan(1e-5);
        }
        const vs = values(single.trainableVariables);
        const vp = values(par.trainableVariables);
        // The steps moved the weights, and both tails moved them alike.
        expect(Math.max(...vs.map((v, i) => relDiff(v, before[i])))).toBeGreaterThan(1e-3);
        for (let i = 0; i < vs.length; i++) expect(relDiff(vp[i], vs[i]), par.variableNames[i]).toBeLessThan(1e-5);
        // The worker computes with exactly the main thread's current weights (sent with each request).
        tf.dispose((await par.computeGradients(b, labels)).grads);
        const [{ values: w }] = await par.workerState();
        expect(w.length).toBe(vp.reduce((a, v) => a + v.length, 0));
        let offset = 0;
        for (const v of vp) {
          expect(w.subarray(offset, offset + v.length)).toEqual(v);
          offset += v.length;
        }
        tf.dispose([b, labels]);
        optS.dispose();
        optP.dispose();
      } finally {
        single.dispose();
        await par.dispose();
      }
    });
  }

  it('is reproducible with dropout: same seed, same weights after 3 Adam steps; the single-thread tail draws the same masks', async () => {
    const run = async (seed: number, threads: number, optimizer: tf.Optimizer) => {
      const opts = { ...BASE, dropout: 0.5, seed };
      const tail = await createTrainingTail(model, opts, { threads });
      try {
        for (let step = 0; step < 3; step++) {
          const { b, labels } = batch(7, step);
          await tail.trainStep(b, labels, optimizer);
          tf.dispose([b, labels]);
        }
        return values(tail.trainableVariables);
      } finally {
        optimizer.dispose();
        await tail.dispose();
      }
    };
    const a = await run(3, 2, tf.train.adam(1e-2));
    const b = await run(3, 2, tf.train.adam(1e-2));
    for (let i = 0; i < a.length; i++) expect(b[i]).toEqual(a[i]);
    // Against the single-thread tail with SGD: Adam turns the sign of a near-zero gradient element
    // (which the summation order can flip) into a full step, SGD keeps differences proportional.
    const sgdParallel = await run(3, 2, tf.train.sgd(0.1));
    const sgdSingle = await run(3, 1, tf.train.sgd(0.1));
    const sgdOther = await run(4, 2, tf.train.sgd(0.1));
    expect(Math.max(...sgdParallel.map((v, i) => relDiff(v, sgdSingle[i])))).toBeLessThan(1e-5);
    // Another seed draws other masks, so the check above can fail.
    expect(Math.max(...sgdParallel.map((v, i) => relDiff(v, sgdOther[i])))).toBeGreaterThan(1e-3);
  });

  it('leaks no tensors (main thread and worker) and ends its worker thread on dispose', async () => {
    const tasks = () => readdirSync('/proc/self/task').length;
    const threadsBefore = tasks();
    const tensorsBefore = tf.memory().numTensors;
    const tail = await createTrainingTail(model, { ...BASE, seed: 1 }, { threads: 2 });
    expect(tasks()).toBeGreaterThan(threadsBefore);
    const optimizer = tf.train.adam(1e-3);
    const { b, labels } = batch(5, 9);
    await tail.trainStep(b, labels, optimizer); // creates Adam's slots
    const afterFirst = tf.memory().numTensors;
    const [{ numTensors: workerFirst }] = await tail.workerState();
    for (let i = 0; i < 3; i++) {
      const r = await tail.trainStep(b, labels, optimizer);
      expect(Number.isFinite(r.loss)).toBe(true);
      expect(r.correct).toBeGreaterThanOrEqual(0);
      expect(r.correct).toBeLessThanOrEqual(5);
    }
    const g = await tail.computeGradients(b, labels, false);
    tf.dispose(g.grads);
    tf.dispose(tail.logits(b, true));
    tf.dispose(tail.features(b));
    expect(tf.memory().numTensors).toBe(afterFirst);
    const [{ numTensors: workerAfter }] = await tail.workerState();
    expect(workerAfter).toBe(workerFirst);
    await tail.dispose();
    optimizer.dispose();
    tf.dispose([b, labels]);
    expect(tf.memory().numTensors).toBe(tensorsBefore);
    await expect(tail.workerState()).rejects.toThrow(/disposed/);
    await expect(tail.trainStep(b, labels, optimizer)).rejects.toThrow(/disposed/);
    await expect.poll(tasks, { timeout: 5000 }).toBeLessThanOrEqual(threadsBefore);
  });

  it('rejects a second step while one is running, and bad shapes', async () => {
    const tail = await createTrainingTail(model, { ...BASE, dropout: 0 }, { threads: 2 });
    const optimizer = tf.train.sgd(0.1);
    const { b, labels } = batch(4, 2);
    try {
      const first = tail.trainStep(b, labels, optimizer);
      await expect(tail.trainStep(b, labels, optimizer)).rejects.toThrow(/still running/);
      await first;
      const bad = tf.zeros([2, 3, 3, 8]) as Tensor4D;
      await expect(tail.trainStep(bad, labels, optimizer)).rejects.toThrow(/boundary activations must be/);
      await expect(tail.trainStep(b, tf.tensor1d([0, 1], 'int32'), optimizer)).rejects.toThrow(/labels have 2 rows/);
      // Labels of a wrong width fail in both shards; the tail stays usable afterwards.
      const wide = tf.zeros([4, 3]);
      await expect(tail.trainStep(b, wide, optimizer)).rejects.toThrow();
      await new Promise((resolve) => setTimeout(resolve, 200));
      const r = await tail.trainStep(b, labels, optimizer);
      expect(Number.isFinite(r.loss)).toBe(true);
      tf.dispose([bad, wide]);
    } finally {
      tf.dispose([b, labels]);
      optimizer.dispose();
      await tail.dispose();
    }
  });

  it('3 classes with one-hot float labels: gradients equal the single-thread tail', async () => {
    const model3 = buildClassifier({ alpha: 0.35, inputSize: SIZE, numClasses: 3 });
    seedWeights(model3, 11);
    const opts: TailOptions = { ...BASE, numClasses: 3, dropout: 0 };
    const single = createTail(model3, opts);
    const par = await createTrainingTail(model3, opts, { threads: 2 });
    try {
      const { b, labels } = batch(6, 4, 3);
      const oneHot = tf.oneHot(labels as tf.Tensor1D, 3).toFloat();
      const s = single.computeGradients(b, oneHot);
      const p = await par.computeGradients(b, oneHot);
      expect(relNum(p.loss, s.loss)).toBeLessThan(1e-5);
      expect(p.correct).toBe(s.correct);
      for (let i = 0; i < s.grads.length; i++) expect(relDiff(p.grads[i], s.grads[i]), par.variableNames[i]).toBeLessThan(1e-5);
      tf.dispose([...s.grads, ...p.grads, b, labels, oneHot]);
    } finally {
      single.dispose();
      await par.dispose();
      model3.dispose();
    }
  });

  it('falls back to the single-thread tail for threads <= 1', async () => {
    const tail = await createTrainingTail(model, BASE, { threads: 1 });
    expect(tail.threads).toBe(1);
    const { b, labels } = batch(3, 1);
    const optimizer = tf.train.sgd(0.1);
    const r = await tail.trainStep(b, labels, optimizer);
    expect(Number.isFinite(r.loss)).toBe(true);
    await tail.dispose();
    optimizer.dispose();
    tf.dispose([b, labels]);
  });

  it('3 threads: two workers, batch 7, gradients equal the single-thread tail', async () => {
    const single = createTail(model, { ...BASE, numClasses: 2, dropout: 0 });
    const par = await createTrainingTail(model, { ...BASE, dropout: 0 }, { threads: 3 });
    try {
      expect(par.threads).toBe(3);
      const { b, labels } = batch(7, 3);
      const s = single.computeGradients(b, labels);
      const p = await par.computeGradients(b, labels);
      for (let i = 0; i < s.grads.length; i++) expect(relDiff(p.grads[i], s.grads[i])).toBeLessThan(1e-5);
      tf.dispose([...s.grads, ...p.grads, b, labels]);
    } finally {
      single.dispose();
      await par.dispose();
    }
  });
});

describe('validation logits over the threads', () => {
  it('assignBatches gives each next-largest batch to the least-loaded thread, this thread first on ties', () => {
    expect(assignBatches([32, 32, 1], 2)).toEqual([0, 1, 0]);
    expect(assignBatches([32, 32, 32, 5], 3)).toEqual([0, 1, 2, 0]);
    expect(assignBatches([3], 2)).toEqual([0]);
    expect(assignBatches([], 2)).toEqual([]);
  });

  it('equal, bit for bit, the main thread logits after training steps (the worker gets the current weights), without leaks', async () => {
    const par = await createTrainingTail(model, { ...BASE, dropout: 0.2, seed: 9 }, { threads: 2 });
    const optimizer = tf.train.adam(1e-2);
    try {
      expect(par.threads).toBe(2);
      for (let step = 0; step < 2; step++) {
        const { b, labels } = batch(6, step + 20);
        await par.trainStep(b, labels, optimizer);
        tf.dispose([b, labels]);
      }
      const rowLen = boundaryShape.reduce((a, b) => a * b, 1);
      const sizes = [32, 32, 1];
      const batches = sizes.map((n, k) =>
        tf.tidy(() => tf.randomUniform([n * rowLen], 0, 6, 'float32', 40 + k).dataSync() as Float32Array),
      );
      const copies = batches.map((b) => b.slice());
      const before = tf.memory().numTensors;
      const got = await par.evaluateLogits(batches);
      expect(tf.memory().numTensors).toBe(before);
      expect(batches).toEqual(copies); // the caller's batches are not transferred away
      const want = batches.map((b) => batchLogits(par, b));
      expect(got.map((g) => g.length)).toEqual([32, 32, 1]);
      for (let k = 0; k < sizes.length; k++) expect(got[k]).toEqual(want[k]);
      const [worker] = await par.workerState();
      const again = await par.evaluateLogits(batches);
      for (let k = 0; k < sizes.length; k++) expect(again[k]).toEqual(want[k]);
      expect((await par.workerState())[0].numTensors).toBe(worker.numTensors);
      // The single-thread tail with the same weights computes the same logits.
      const single = await createTrainingTail(model, BASE, { threads: 1 });
      single.trainableVariables.forEach((v, i) => {
        v.assign(par.trainableVariables[i]);
      });
      const alone = await single.evaluateLogits(batches);
      for (let k = 0; k < sizes.length; k++) expect(alone[k]).toEqual(want[k]);
      await single.dispose();
    } finally {
      optimizer.dispose();
      await par.dispose();
    }
  });
});
