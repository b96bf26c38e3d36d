import type { LayersModel, SymbolicTensor } from '@tensorflow/tfjs';
import { logitUnits, outputActivation } from './head-convention.js';
import { HEAD, PREPROCESS } from './head-names.js';
import { mobileNetV2Features } from './mobilenet-v2.js';
import { tf } from './tf.js';

export { HEAD, PREPROCESS };

export interface ClassifierOptions {
  alpha: number;
  inputSize: number;
  numClasses: number;
  dropout?: number;
  /** Seeds the classifier's initial weights (Keras' glorot_uniform), so a training run is reproducible. */
  seed?: number;
}

/**
 * The exported model: RGB 0..255 in, probabilities out.
 * input -> Rescaling(x/127.5-1) -> MobileNetV2 base (Keras names) -> GAP -> Dropout -> Dense logits
 * -> sigmoid (2 classes: one unit, P(classes[1])) or softmax (N > 2).
 * Training works on the `logits` layer output; only standard tfjs layers, so
 * `tf.loadLayersModel` loads it anywhere.
 */
export function buildClassifier(opts: ClassifierOptions): LayersModel {
  const { alpha, inputSize, numClasses, dropout = 0.2, seed } = opts;
  if (numClasses < 2) throw new Error(`a classifier needs at least 2 classes; got ${numClasses}`);
  const input = tf.input({ shape: [inputSize, inputSize, 3], name: 'image' });
  let x = tf.layers.rescaling({ scale: PREPROCESS.scale, offset: PREPROCESS.offset, name: HEAD.preprocess }).apply(input) as SymbolicTensor;
  x = mobileNetV2Features(x, alpha);
  x = tf.layers.globalAveragePooling2d({ name: HEAD.pool }).apply(x) as SymbolicTensor;
  x = tf.layers.dropout({ rate: dropout, name: HEAD.dropout }).apply(x) as SymbolicTensor;
  const units = logitUnits(numClasses);
  x = tf.layers.dense({ units, name: HEAD.logits, kernelInitializer: tf.initializers.glorotUniform({ seed }) }).apply(x) as SymbolicTensor;
  x = tf.layers.activation({ activation: outputActivation(numClasses), name: HEAD.probabilities }).apply(x) as SymbolicTensor;
  return tf.model({ inputs: input, outputs: x, name: `edgetune_mobilenetv2_${alpha}_${inputSize}` });
}

/** Probabilities per class, in label order, from the model's output rows (the head convention's probabilityRows). */
export { probabilityRows as toClassProbabilities } from './head-convention.js';
