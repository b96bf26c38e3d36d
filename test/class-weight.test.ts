import { beforeAll, describe, expect, it } from 'vitest';
import { initBackend } from '../core/backend.js';
import { buildClassifier } from '../core/classifier.js';
import { classificationLoss, classTargets } from '../core/head-convention.js';
import type { Tensor, Tensor2D, Tensor4D } from '../core/tf.js';
import { tf } from '../core/tf.js';
import { imbalanceWarning, resolveClassWeights, weightedClassificationLoss } from '../training/class-weights.js';
import { createTail } from '../training/tail/tail.js';

const near = (a: ArrayLike<number>, b: ArrayLike<number>, tol: number) => {
  expect(a.length).toBe(b.length);
  for (let i = 0; i < a.length; i++) expect(Math.abs(a[i] - b[i])).toBeLessThan(tol);
};

describe('--class-weight parsing and the imbalance warning', () => {
  const classes = ['cat', 'dog', 'eel'];

  it("balanced is scikit-learn's n / (classes * count); named weights default the others to 1; none is off", () => {
    expect(resolveClassWeights('balanced', classes, [30, 10, 20])).toEqual([60 / 90, 60 / 30, 60 / 60]);
    expect(resolveClassWeights('dog=2.5, eel = 0.5', classes, [1, 1, 1])).toEqual([1, 2.5, 0.5]);
    expect(resolveClassWeights('none', classes, [1, 1, 1])).toBeUndefined();
    expect(resolveClassWeights(undefined, classes, [1, 1, 1])).toBeUndefined();
  });

  it('names what is wrong', () => {
    expect(() => resolveClassWeights('cow=2', classes, [1, 1, 1])).toThrow(/no class 'cow' \(classes: cat, dog, eel\)/);
    expect(() => resolveClassWeights('dog=-1', classes, [1, 1, 1])).toThrow(/positive number/);
    expect(() => resolveClassWeights('dog=abc', classes, [1, 1, 1])).toThrow(/positive number/);
    expect(() => resolveClassWeights('heavy', classes, [1, 1, 1])).toThrow(/balanced, none or <class>=<weight>/);
    expect(() => resolveClassWeights('balanced', classes, [3, 0, 2])).toThrow(/no training images/);
  });

  it('warns when the largest class is more than 5x the smallest', () => {
    expect(imbalanceWarning(classes, [50, 10, 20], undefined)).toBeUndefined();
    const w = imbalanceWarning(classes, [12, 61, 20], undefined);
    expect(w).toMatch(/'dog' has 61 .* 'cat' 12 \(5\.1x\); consider --class-weight balanced/);
    expect(imbalanceWarning(classes, [12, 61, 20], 'balanced')).toMatch(/class weights in use \(balanced\)/);
  });
});

describe('the weighted loss', () => {
  beforeAll(async () => {
    await initBackend();
  });

  it('is sum(w[label] * loss_i) / N for one logit (sigmoid) and for softmax; without weights exactly the plain loss', () => {
    const before = tf.memory().numTensors;
    tf.tidy(() => {
      // Binary: per-example sigmoid cross-entropy computed by hand.
      const z = [2, -1, 0.5, -3];
      const y = [1, 0, 0, 1];
      const w = [0.5, 3];
      const logits = tf.tensor2d(z, [4, 1]);
      const labels = tf.tensor1d(y, 'int32');
      const targets = classTargets(labels, 2);
      const bce = z.map((zi, i) => Math.max(zi, 0) - zi * y[i] + Math.log1p(Math.exp(-Math.abs(zi))));
      const expected = bce.reduce((a, l, i) => a + w[y[i]] * l, 0) / 4;
      expect(weightedClassificationLoss(logits, targets, labels, 2, w).dataSync()[0]).toBeCloseTo(expected, 5);
      expect(weightedClassificationLoss(logits, targets, labels, 2, undefined).dataSync()[0]).toBe(
        classificationLoss(logits, targets, 2).dataSync()[0],
      );

      // Three classes: -log softmax[label].
      const z3 = [
        [1, 2, 0],
        [0, 0, 3],
        [2, -1, 1],
      ];
      const y3 = [1, 0, 2];
      const w3 = [2, 1, 0.25];
      const l3 = tf.tensor2d(z3);
      const lab3 = tf.tensor1d(y3, 'int32');
      const ce = z3.map((row, i) => Math.log(row.reduce((a, v) => a + Math.exp(v), 0)) - row[y3[i]]);
      const exp3 = ce.reduce((a, l, i) => a + w3[y3[i]] * l, 0) / 3;
      expect(weightedClassificationLoss(l3, classTargets(lab3, 3), lab3, 3, w3).dataSync()[0]).toBeCloseTo(exp3, 5);
    });
    expect(tf.memory().numTensors).toBe(before);
  });

  it('in the phase-2 tail: shard gradients weighted by shard size combine to the whole batch (what the parallel step relies on)', () => {
    const SIZE = 32;
    const model = buildClassifier({ alpha: 0.35, inputSize: SIZE, numClasses: 2, seed: 3 });
    const weighted = createTail(model, { fineTuneAt: 153, numClasses: 2, dropout: 0, classWeights: [1, 4] });
    const plain = createTail(model, { fineTuneAt: 153, numClasses: 2, dropout: 0 });
    const ones = createTail(model, { fineTuneAt: 153, numClasses: 2, dropout: 0, classWeights: [1, 1] });
    const before = tf.memory().numTensors;
    const [h, w, c] = weighted.boundaryShape;
    const n = 6;
    const x = tf.randomNormal([n, h, w, c], 0, 1, 'float32', 5) as Tensor4D;
    const y = tf.tensor1d([0, 1, 1, 0, 0, 1], 'int32');
    const whole = weighted.computeGradients(x, y, false);
    const parts = [
      [0, 2],
      [2, 4],
    ].map(([s, k]) => {
      const xs = tf.slice(x, [s, 0, 0, 0], [k, h, w, c]) as Tensor4D;
      const ys = tf.slice(y, [s], [k]);
      const r = weighted.computeGradients(xs, ys, false);
      tf.dispose([xs, ys]);
      return { ...r, k };
    });
    expect(parts[0].loss * (2 / n) + parts[1].loss * (4 / n)).toBeCloseTo(whole.loss, 5);
    whole.grads.forEach((g, v) => {
      const combined = tf.tidy(() => tf.add(tf.mul(parts[0].grads[v], 2 / n), tf.mul(parts[1].grads[v], 4 / n)));
      const scale = tf.tidy(() => tf.max(tf.abs(g)).dataSync()[0]);
      near(combined.dataSync(), g.dataSync(), 1e-5 * (1 + scale));
      combined.dispose();
    });
    // The weights change the gradient; weights of 1 give the unweighted loss.
    const p = plain.computeGradients(x, y, false);
    const o = ones.computeGradients(x, y, false);
    expect(o.loss).toBeCloseTo(p.loss, 6);
    expect(Math.abs(whole.loss - p.loss)).toBeGreaterThan(1e-4);
    const logitsT = weighted.logits(x, false) as Tensor2D;
    const manual = tf.tidy(() => {
      const z = logitsT.dataSync();
      const yy = y.dataSync();
      let s = 0;
      for (let i = 0; i < n; i++) s += [1, 4][yy[i]] * (Math.max(z[i], 0) - z[i] * yy[i] + Math.log1p(Math.exp(-Math.abs(z[i]))));
      return s / n;
    });
    expect(whole.loss).toBeCloseTo(manual, 4);
    tf.dispose([x, y, logitsT, ...whole.grads, ...parts.flatMap((q) => q.grads), ...p.grads, ...o.grads] as Tensor[]);
    expect(tf.memory().numTensors).toBe(before);
    for (const t of [weighted, plain, ones]) t.dispose();
    model.dispose();
  }, 60_000);
});
