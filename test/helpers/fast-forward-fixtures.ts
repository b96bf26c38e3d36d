import type { LayersModel } from '@tensorflow/tfjs';
import { tf } from '../../core/tf.js';

/**
 * Sets every BatchNormalization layer to seeded random statistics far from identity (gamma 0.5..1.5,
 * beta +-0.3, mean +-0.2, variance 0.5..2), so BN folding is really exercised on random-weight models.
 */
export function randomizeBatchNorm(model: LayersModel, seed = 1): void {
  let s = seed;
  for (const layer of model.layers) {
    if (layer.getClassName() !== 'BatchNormalization') continue;
    const n = layer.getWeights()[0].shape[0];
    s += 4;
    const values = [
      tf.randomUniform([n], 0.5, 1.5, 'float32', s),
      tf.randomUniform([n], -0.3, 0.3, 'float32', s + 1),
      tf.randomUniform([n], -0.2, 0.2, 'float32', s + 2),
      tf.randomUniform([n], 0.5, 2, 'float32', s + 3),
    ];
    layer.setWeights(values);
    tf.dispose(values);
  }
}
