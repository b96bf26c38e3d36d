import type { LayersModel } from '@tensorflow/tfjs';
import { tf } from '../../core/tf.js';
import type { BoundaryWeights } from '../../training/workers/boundary-runner.js';

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

/** The weights of `model` as the boundary pool takes them (specs + one buffer), through a save handler. */
export async function weightsOf(model: LayersModel): Promise<BoundaryWeights> {
  let got: BoundaryWeights | undefined;
  await model.save(
    tf.io.withSaveHandler(async (a) => {
      got = { weightSpecs: a.weightSpecs ?? [], weightData: a.weightData as ArrayBuffer };
      return { modelArtifactsInfo: { dateSaved: new Date(), modelTopologyType: 'JSON' } };
    }),
  );
  if (!got) throw new Error('no weights saved');
  return got;
}
