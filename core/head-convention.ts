// The classification head convention, in one place: two classes are ONE logit whose sigmoid is
// P(classes[1]) (probability rows [1 - p, p]); N > 2 classes are N logits with softmax. Training
// (targets, loss, correct counts), the exported model (units, activation) and every reader of
// its output (probability rows) use these functions.
import { isBinary, logitUnits } from './probability-rows.js';
import type { Tensor, Tensor2D } from './tf.js';
import { tf } from './tf.js';

export { argmax, isBinary, logitUnits, outputActivation, probabilityRows, temperedProbabilities } from './probability-rows.js';

/**
 * Float targets [N, logitUnits] from class indices [N] (0/1 for two classes; one-hot otherwise),
 * or targets already in that shape (e.g. soft labels), cast to float32.
 */
export function classTargets(labels: Tensor, numClasses: number): Tensor2D {
  return tf.tidy(() => {
    if (labels.rank === 2 && labels.shape[1] === logitUnits(numClasses)) return tf.cast(labels, 'float32') as Tensor2D;
    if (labels.rank !== 1) throw new Error(`labels must be class indices [N]; got shape [${labels.shape}]`);
    const n = labels.shape[0];
    return isBinary(numClasses)
      ? (tf.reshape(tf.cast(labels, 'float32'), [n, 1]) as Tensor2D)
      : (tf.oneHot(tf.cast(labels, 'int32') as tf.Tensor1D, numClasses).toFloat() as Tensor2D);
  });
}

/** Sigmoid cross-entropy on the one logit, or softmax cross-entropy; targets from classTargets. */
export function classificationLoss(logits: Tensor2D, targets: Tensor2D, numClasses: number): tf.Scalar {
  return tf.tidy(() =>
    isBinary(numClasses)
      ? (tf.losses.sigmoidCrossEntropy(targets, logits) as tf.Scalar)
      : (tf.losses.softmaxCrossEntropy(targets, logits) as tf.Scalar),
  );
}

/** Number of rows whose predicted class (logit > 0, or argmax) is the target's, as a float32 scalar. */
export function correctPredictions(logits: Tensor2D, targets: Tensor2D, numClasses: number): tf.Scalar {
  return tf.tidy(() =>
    isBinary(numClasses)
      ? (tf.sum(tf.cast(tf.equal(tf.cast(tf.greater(logits, 0), 'float32'), targets), 'float32')) as tf.Scalar)
      : (tf.sum(tf.cast(tf.equal(tf.argMax(logits, 1), tf.argMax(targets, 1)), 'float32')) as tf.Scalar),
  );
}

/** Probability rows [N, numClasses] in class order from logits. */
export function toProbabilities(logits: Tensor2D, numClasses: number): Tensor2D {
  return tf.tidy(() => {
    if (isBinary(numClasses)) {
      const p = tf.sigmoid(logits);
      return tf.concat([tf.sub(1, p), p], 1) as Tensor2D;
    }
    return tf.softmax(logits) as Tensor2D;
  });
}
