import { HEAD } from '../core/classifier.js';
import { classTargets, correctPredictions, toProbabilities } from '../core/head-convention.js';
import type { LayersModel, Tensor, Tensor2D } from '../core/tf.js';
import { tf } from '../core/tf.js';
import { adamPowers, setAdamPowers } from '../core/tfjs-internals.js';
import type { NamedTensor } from './checkpoint.js';
import { weightedClassificationLoss } from './class-weights.js';
import { epochOrder } from './dataset.js';
import { gatherRows } from './features.js';

/**
 * Phase 1 on cached pooled features: dropout -> Dense logits, exactly the head of the classifier,
 * trained with plain tf ops (milliseconds per epoch). Its weights start from and end in the
 * model's `logits` layer.
 */
export class HeadTrainer {
  readonly kernel: tf.Variable;
  readonly bias: tf.Variable;
  private readonly optimizer: tf.Optimizer;
  private calls = 0;

  constructor(
    private readonly model: LayersModel,
    private readonly numClasses: number,
    lr: number,
    private readonly dropout: number,
    /** Seeds the dropout masks, so a run is reproducible. */
    private readonly seed?: number,
    /** Loss weight per class (--class-weight); undefined: the plain mean loss. */
    private readonly classWeights?: readonly number[],
  ) {
    const [k, b] = model.getLayer(HEAD.logits).getWeights();
    this.kernel = tf.variable(k, true, 'head/kernel');
    this.bias = tf.variable(b, true, 'head/bias');
    this.optimizer = tf.train.adam(lr);
  }

  logits(features: Tensor2D, training: boolean): Tensor2D {
    return tf.tidy(() => {
      const x =
        training && this.dropout > 0
          ? tf.dropout(features, this.dropout, undefined, this.seed === undefined ? undefined : this.seed + this.calls++)
          : features;
      return tf.add(tf.matMul(x, this.kernel), this.bias) as Tensor2D;
    });
  }

  /** One epoch over shuffled batches; returns mean loss and accuracy on the training batches. */
  trainEpoch(
    features: Float32Array,
    dim: number,
    labels: Int32Array,
    batchSize: number,
    seed: number,
    epoch: number,
  ): { loss: number; accuracy: number } {
    const n = labels.length;
    const order = epochOrder(n, seed, epoch);
    let lossSum = 0;
    let correct = 0;
    for (let start = 0; start < n; start += batchSize) {
      const idx = order.slice(start, start + batchSize);
      const xb = gatherRows({ data: features, shape: [dim], rows: n }, idx);
      const yb = Int32Array.from(idx.map((k) => labels[k]));
      const { loss, hits } = tf.tidy(() => {
        const x = tf.tensor2d(xb, [idx.length, dim]);
        const y = tf.tensor1d(yb, 'int32');
        let hits = 0;
        const lossT = this.optimizer.minimize(
          () => {
            const logits = this.logits(x, true);
            const targets = classTargets(y, this.numClasses);
            hits = correctPredictions(logits, targets, this.numClasses).dataSync()[0];
            return weightedClassificationLoss(logits, targets, y, this.numClasses, this.classWeights);
          },
          true,
          [this.kernel, this.bias],
        ) as Tensor;
        return { loss: lossT.dataSync()[0], hits };
      });
      lossSum += loss * idx.length;
      correct += hits;
    }
    return { loss: lossSum / n, accuracy: correct / n };
  }

  /** Continues the seeded dropout stream after `draws` training steps (one draw each), as a resumed run must. */
  skipDropoutDraws(draws: number): void {
    this.calls += draws;
  }

  /** Class probabilities (rows) for features, in inference mode. */
  probabilities(features: Float32Array, dim: number): Float32Array {
    return tf.tidy(() => {
      const logits = this.logits(tf.tensor2d(features, [features.length / dim, dim]), false);
      return toProbabilities(logits, this.numClasses).dataSync() as Float32Array;
    });
  }

  optimizerWeights(): Promise<NamedTensor[]> {
    return this.optimizer.getWeights();
  }

  optimizerPowers(): [number, number] | undefined {
    return adamPowers(this.optimizer);
  }

  async restoreOptimizer(weights: NamedTensor[], powers?: readonly [number, number]): Promise<void> {
    await this.optimizer.setWeights(weights);
    if (powers) setAdamPowers(this.optimizer, powers);
  }

  /** Writes the trained head into the model's `logits` layer. */
  writeBack(): void {
    this.model.getLayer(HEAD.logits).setWeights([this.kernel, this.bias]);
  }

  dispose(): void {
    this.kernel.dispose();
    this.bias.dispose();
    this.optimizer.dispose();
  }
}
