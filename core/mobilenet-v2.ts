import type { LayersModel, SymbolicTensor } from '@tensorflow/tfjs';
import { tf } from './tf.js';

export const ALPHAS = [0.35, 0.5, 0.75, 1.0, 1.3, 1.4] as const;

export interface MobileNetV2Options {
  alpha?: number;
  /** Square input size, >= 32. */
  inputSize?: number;
  /** Adds global average pooling and the 1000-class `predictions` softmax. */
  includeTop?: boolean;
  classes?: number;
}

/** Keras' `_make_divisible`: round to a multiple of 8 without going more than 10% down. */
export function makeDivisible(v: number, divisor = 8): number {
  let n = Math.max(divisor, Math.floor((v + divisor / 2) / divisor) * divisor);
  if (n < 0.9 * v) n += divisor;
  return n;
}

/** [filters, stride, expansion] of blocks 0..16, as in keras.applications.MobileNetV2. */
export const BLOCKS: ReadonlyArray<readonly [number, number, number]> = [
  [16, 1, 1],
  [24, 2, 6],
  [24, 1, 6],
  [32, 2, 6],
  [32, 1, 6],
  [32, 1, 6],
  [64, 2, 6],
  [64, 1, 6],
  [64, 1, 6],
  [64, 1, 6],
  [96, 1, 6],
  [96, 1, 6],
  [96, 1, 6],
  [160, 2, 6],
  [160, 1, 6],
  [160, 1, 6],
  [320, 1, 6],
];

/** Keras' `correct_pad` for a 3x3 stride-2 valid convolution on an h x w input. */
function correctPad(h: number, w: number): [[number, number], [number, number]] {
  return [
    [1 - (1 - (h % 2)), 1],
    [1 - (1 - (w % 2)), 1],
  ];
}

const bn = (name: string) => tf.layers.batchNormalization({ axis: -1, epsilon: 1e-3, momentum: 0.999, name });
const relu6 = (name: string) => tf.layers.reLU({ maxValue: 6, name });

function spatial(x: SymbolicTensor): [number, number] {
  return [x.shape[1] as number, x.shape[2] as number];
}

/**
 * Appends the MobileNetV2 feature extractor (Keras 2.2.4 graph, Keras layer and weight names,
 * up to `out_relu`) to `input`. Returns the `out_relu` tensor.
 */
export function mobileNetV2Features(input: SymbolicTensor, alpha = 1.0): SymbolicTensor {
  if (!ALPHAS.includes(alpha as (typeof ALPHAS)[number])) {
    throw new Error(`alpha must be one of ${ALPHAS.join(', ')}; got ${alpha}`);
  }
  const first = makeDivisible(32 * alpha);
  let x = tf.layers.zeroPadding2d({ padding: correctPad(...spatial(input)), name: 'Conv1_pad' }).apply(input) as SymbolicTensor;
  x = tf.layers
    .conv2d({ filters: first, kernelSize: 3, strides: 2, padding: 'valid', useBias: false, name: 'Conv1' })
    .apply(x) as SymbolicTensor;
  x = bn('bn_Conv1').apply(x) as SymbolicTensor;
  x = relu6('Conv1_relu').apply(x) as SymbolicTensor;

  BLOCKS.forEach(([filters, stride, expansion], id) => {
    x = invertedResidual(x, filters, alpha, stride, expansion, id);
  });

  const last = alpha > 1.0 ? makeDivisible(1280 * alpha) : 1280;
  x = tf.layers.conv2d({ filters: last, kernelSize: 1, padding: 'valid', useBias: false, name: 'Conv_1' }).apply(x) as SymbolicTensor;
  x = bn('Conv_1_bn').apply(x) as SymbolicTensor;
  return relu6('out_relu').apply(x) as SymbolicTensor;
}

function invertedResidual(
  inputs: SymbolicTensor,
  filters: number,
  alpha: number,
  stride: number,
  expansion: number,
  blockId: number,
): SymbolicTensor {
  const inChannels = inputs.shape[3] as number;
  const pointwise = makeDivisible(Math.trunc(filters * alpha));
  let x = inputs;
  let prefix = `block_${blockId}_`;
  if (blockId) {
    x = tf.layers
      .conv2d({ filters: expansion * inChannels, kernelSize: 1, padding: 'same', useBias: false, name: `${prefix}expand` })
      .apply(x) as SymbolicTensor;
    x = bn(`${prefix}expand_BN`).apply(x) as SymbolicTensor;
    x = relu6(`${prefix}expand_relu`).apply(x) as SymbolicTensor;
  } else {
    prefix = 'expanded_conv_';
  }
  if (stride === 2) {
    x = tf.layers.zeroPadding2d({ padding: correctPad(...spatial(x)), name: `${prefix}pad` }).apply(x) as SymbolicTensor;
  }
  x = tf.layers
    .depthwiseConv2d({
      kernelSize: 3,
      strides: stride,
      useBias: false,
      padding: stride === 1 ? 'same' : 'valid',
      name: `${prefix}depthwise`,
    })
    .apply(x) as SymbolicTensor;
  x = bn(`${prefix}depthwise_BN`).apply(x) as SymbolicTensor;
  x = relu6(`${prefix}depthwise_relu`).apply(x) as SymbolicTensor;
  x = tf.layers
    .conv2d({ filters: pointwise, kernelSize: 1, padding: 'same', useBias: false, name: `${prefix}project` })
    .apply(x) as SymbolicTensor;
  x = bn(`${prefix}project_BN`).apply(x) as SymbolicTensor;
  if (inChannels === pointwise && stride === 1) {
    return tf.layers.add({ name: `${prefix}add` }).apply([inputs, x]) as SymbolicTensor;
  }
  return x;
}

/** keras.applications.MobileNetV2 (weights not loaded: see weights.ts). */
export function buildMobileNetV2(opts: MobileNetV2Options = {}): LayersModel {
  const { alpha = 1.0, inputSize = 224, includeTop = false, classes = 1000 } = opts;
  if (!Number.isInteger(inputSize) || inputSize < 32) throw new Error(`input size must be an integer >= 32; got ${inputSize}`);
  const input = tf.input({ shape: [inputSize, inputSize, 3], name: 'input_1' });
  let x = mobileNetV2Features(input, alpha);
  if (includeTop) {
    x = tf.layers.globalAveragePooling2d({ name: 'global_average_pooling2d' }).apply(x) as SymbolicTensor;
    x = tf.layers.dense({ units: classes, activation: 'softmax', name: 'predictions' }).apply(x) as SymbolicTensor;
  }
  return tf.model({ inputs: input, outputs: x, name: `mobilenetv2_${alpha.toFixed(2)}_${inputSize}` });
}

export interface ParamCounts {
  total: number;
  trainable: number;
  nonTrainable: number;
}

/** Keras' summary counts: BatchNorm moving statistics are the non-trainable parameters. */
export function paramCounts(model: LayersModel): ParamCounts {
  let trainable = 0;
  let nonTrainable = 0;
  for (const layer of model.layers) {
    for (const w of layer.weights) {
      const n = w.shape.reduce((a: number, b) => a * (b as number), 1);
      if (w.trainable && layer.trainable) trainable += n;
      else nonTrainable += n;
    }
  }
  return { total: trainable + nonTrainable, trainable, nonTrainable };
}
