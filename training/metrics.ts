import { argmax } from '../core/head-convention.js';
import type { Metrics } from '../core/manifest.js';

/**
 * Evaluation metrics computed from class probabilities (one row per image, in class order) and
 * the true label indices. Pure functions, no tfjs: the training loop, `evaluate` and the tests
 * all feed them plain arrays.
 */

export type ProbabilityRows = ReadonlyArray<ArrayLike<number>>;

/** Keras' backend epsilon: probabilities are clipped to [EPS, 1 - EPS] before taking logs. */
export const LOSS_EPSILON = 1e-7;

/** Throws a clear error unless `probs` and `labels` describe the same non-empty set of images over `numClasses` classes. */
export function validateInputs(probs: ProbabilityRows, labels: ArrayLike<number>, numClasses: number): void {
  if (!Number.isInteger(numClasses) || numClasses < 2) throw new Error(`metrics: need at least 2 classes, got ${numClasses}`);
  if (probs.length !== labels.length) {
    throw new Error(`metrics: ${probs.length} probability rows but ${labels.length} labels`);
  }
  if (probs.length === 0) throw new Error('metrics: no examples to evaluate');
  for (let i = 0; i < probs.length; i++) {
    const row = probs[i];
    if (row.length !== numClasses) throw new Error(`metrics: row ${i} has ${row.length} probabilities, expected ${numClasses}`);
    for (let j = 0; j < numClasses; j++) {
      const p = row[j];
      // float32 softmax/sigmoid outputs can overshoot [0, 1] by an ulp.
      if (!Number.isFinite(p) || p < -1e-6 || p > 1 + 1e-6) throw new Error(`metrics: row ${i} has invalid probability ${p}`);
    }
    const y = labels[i];
    if (!Number.isInteger(y) || y < 0 || y >= numClasses)
      throw new Error(`metrics: label ${y} at ${i} is not a class index in [0, ${numClasses})`);
  }
}

export { argmax };

export function predictions(probs: ProbabilityRows): number[] {
  return probs.map((row) => argmax(row));
}

export function accuracy(probs: ProbabilityRows, labels: ArrayLike<number>): number {
  let correct = 0;
  for (let i = 0; i < probs.length; i++) if (argmax(probs[i]) === labels[i]) correct++;
  return correct / probs.length;
}

const clip = (p: number) => Math.min(1 - LOSS_EPSILON, Math.max(LOSS_EPSILON, p));

/**
 * Mean loss. Two classes: binary cross-entropy on p = row[1] (rows are [1 - p, p]);
 * more classes: categorical cross-entropy -log(row[label]).
 */
export function meanLoss(probs: ProbabilityRows, labels: ArrayLike<number>): number {
  const binary = probs[0].length === 2;
  let sum = 0;
  for (let i = 0; i < probs.length; i++) {
    if (binary) {
      const p = clip(probs[i][1]);
      sum += labels[i] === 1 ? -Math.log(p) : -Math.log(1 - p);
    } else {
      sum += -Math.log(clip(probs[i][labels[i]]));
    }
  }
  return sum / probs.length;
}

/** confusion[i][j]: number of images of true class i predicted as class j. */
export function confusionMatrix(probs: ProbabilityRows, labels: ArrayLike<number>, numClasses: number): number[][] {
  const m = Array.from({ length: numClasses }, () => new Array<number>(numClasses).fill(0));
  for (let i = 0; i < probs.length; i++) m[labels[i]][argmax(probs[i])]++;
  return m;
}

/**
 * Precision, recall and support per class from a confusion matrix. A class that is never
 * predicted has precision 0 (not NaN), one with no examples has recall 0 (scikit-learn's zero_division=0).
 */
export function perClassMetrics(confusion: number[][], classes: readonly string[]): Metrics['perClass'] {
  return classes.map((label, k) => {
    const tp = confusion[k][k];
    const support = confusion[k].reduce((a, b) => a + b, 0);
    const predicted = confusion.reduce((a, row) => a + row[k], 0);
    return { label, precision: predicted === 0 ? 0 : tp / predicted, recall: support === 0 ? 0 : tp / support, support };
  });
}

/**
 * ROC AUC from scores (higher = more likely positive) and binary labels (1 = positive), via
 * the Mann-Whitney U statistic with average ranks for tied scores (a tie counts one half).
 * Undefined when only one class is present.
 */
export function rocAuc(scores: ArrayLike<number>, positive: ArrayLike<boolean | number>): number | undefined {
  const n = scores.length;
  const order = Array.from({ length: n }, (_, i) => i).sort((a, b) => scores[a] - scores[b]);
  const ranks = new Float64Array(n);
  for (let i = 0; i < n; ) {
    let j = i;
    while (j + 1 < n && scores[order[j + 1]] === scores[order[i]]) j++;
    const avg = (i + j) / 2 + 1; // ranks are 1-based
    for (let k = i; k <= j; k++) ranks[order[k]] = avg;
    i = j + 1;
  }
  let nPos = 0;
  let rankSum = 0;
  for (let i = 0; i < n; i++) {
    if (positive[i]) {
      nPos++;
      rankSum += ranks[i];
    }
  }
  const nNeg = n - nPos;
  if (nPos === 0 || nNeg === 0) return undefined;
  return (rankSum - (nPos * (nPos + 1)) / 2) / (nPos * nNeg);
}

/** All validation metrics in the shape of the manifest's `MetricsSchema`; `auc` only for two classes (and both present). */
export function computeMetrics(probs: ProbabilityRows, labels: ArrayLike<number>, classes: readonly string[]): Metrics {
  validateInputs(probs, labels, classes.length);
  const confusion = confusionMatrix(probs, labels, classes.length);
  const metrics: Metrics = {
    valAccuracy: accuracy(probs, labels),
    valLoss: meanLoss(probs, labels),
    perClass: perClassMetrics(confusion, classes),
    confusion,
  };
  if (classes.length === 2) {
    const auc = rocAuc(
      probs.map((r) => r[1]),
      Array.from(labels, (y) => y === 1),
    );
    if (auc !== undefined) metrics.auc = auc;
  }
  return metrics;
}
