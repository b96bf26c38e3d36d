// Class weights for the training loss (--class-weight), Keras' `class_weight` of fit(): every
// example's loss is multiplied by its class's weight and the batch loss is the sum over the batch
// size, so a batch split into shards still combines exactly (shard means weighted by shard size).
import { classificationLoss, isBinary } from '../core/head-convention.js';
import type { Tensor, Tensor2D } from '../core/tf.js';
import { tf } from '../core/tf.js';

/** The largest class may be this many times the smallest before training warns. */
export const IMBALANCE_WARNING_RATIO = 5;

/**
 * Weights per class index from `--class-weight`: `balanced` is scikit-learn's
 * n_samples / (n_classes * count[c]) over the training split; `none` (or no option) is
 * undefined, the unweighted loss; `<class>=<w>,...` names classes, the others weigh 1.
 */
export function resolveClassWeights(spec: string | undefined, classes: readonly string[], counts: readonly number[]): number[] | undefined {
  if (spec === undefined || spec === 'none') return undefined;
  if (counts.length !== classes.length) throw new Error('class weights: one count per class expected');
  if (spec === 'balanced') {
    const n = counts.reduce((a, b) => a + b, 0);
    return counts.map((c) => {
      if (c === 0) throw new Error('--class-weight balanced: a class has no training images');
      return n / (classes.length * c);
    });
  }
  const weights = classes.map(() => 1);
  for (const part of spec.split(',')) {
    const m = /^\s*(.+?)\s*=\s*([^=\s]+)\s*$/.exec(part);
    if (!m) throw new Error(`--class-weight: expected balanced, none or <class>=<weight>,...; got '${part}'`);
    const k = classes.indexOf(m[1]);
    if (k < 0) throw new Error(`--class-weight: no class '${m[1]}' (classes: ${classes.join(', ')})`);
    const w = Number(m[2]);
    if (!Number.isFinite(w) || w <= 0) throw new Error(`--class-weight: the weight of '${m[1]}' must be a positive number; got '${m[2]}'`);
    weights[k] = w;
  }
  return weights;
}

/** The warning for a training split whose largest class is more than IMBALANCE_WARNING_RATIO x its smallest, if it is. */
export function imbalanceWarning(classes: readonly string[], counts: readonly number[], spec: string | undefined): string | undefined {
  let lo = 0;
  let hi = 0;
  for (let k = 1; k < counts.length; k++) {
    if (counts[k] < counts[lo]) lo = k;
    if (counts[k] > counts[hi]) hi = k;
  }
  if (!(counts[hi] > IMBALANCE_WARNING_RATIO * counts[lo])) return undefined;
  const ratio = counts[lo] ? (counts[hi] / counts[lo]).toFixed(1) : 'inf';
  const advice = spec && spec !== 'none' ? `class weights in use (${spec})` : 'consider --class-weight balanced';
  return `class imbalance: '${classes[hi]}' has ${counts[hi]} training images, '${classes[lo]}' ${counts[lo]} (${ratio}x); ${advice}; watch per-class recall in the report`;
}

/**
 * The classification loss with per-example weights `classWeights[label]`: sum(w_i * loss_i) / N.
 * Without weights it is exactly classificationLoss (same ops, same numbers).
 */
export function weightedClassificationLoss(
  logits: Tensor2D,
  targets: Tensor2D,
  labels: Tensor,
  numClasses: number,
  classWeights: readonly number[] | undefined,
): tf.Scalar {
  if (!classWeights) return classificationLoss(logits, targets, numClasses);
  if (labels.rank !== 1) throw new Error('class weights need class-index labels [N]');
  return tf.tidy(() => {
    const n = logits.shape[0];
    const w = tf.gather(tf.tensor1d(Array.from(classWeights), 'float32'), tf.cast(labels, 'int32'));
    const perExample = isBinary(numClasses)
      ? tf.reshape(tf.losses.sigmoidCrossEntropy(targets, logits, undefined, 0, tf.Reduction.NONE), [n])
      : tf.losses.softmaxCrossEntropy(targets, logits, undefined, 0, tf.Reduction.NONE);
    return tf.div(tf.sum(tf.mul(perExample, w)), n) as tf.Scalar;
  });
}
