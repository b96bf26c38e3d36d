import { BLOCKS, makeDivisible } from '../mobilenet-v2.js';

/** Keras class of a weighted MobileNetV2 layer, as Keras 3 names it in `.weights.h5` paths. */
export type LayerClass = 'conv2d' | 'depthwise_conv2d' | 'batch_normalization' | 'dense';

/** The weights of each class in Keras' saved order (`layer.weights`: trainable, then non-trainable). */
export const CLASS_WEIGHTS: Record<LayerClass, readonly string[]> = {
  conv2d: ['kernel'],
  depthwise_conv2d: ['depthwise_kernel'],
  batch_normalization: ['gamma', 'beta', 'moving_mean', 'moving_variance'],
  dense: ['kernel', 'bias'],
};

export interface MobileNetLayer {
  /** Today's keras.applications name (what our models use). */
  name: string;
  /** The name in the original MobileNetV2 release files (`mobilenet_v2_weights_tf_dim_ordering_tf_kernels_*.h5`). */
  legacy: string;
  cls: LayerClass;
}

/** The ImageNet top: `predictions` in keras.applications / tf.keras, `Logits` in keras-applications 1.0.x and the release files. */
export const TOP_LAYER = 'predictions';
export const TOP_ALIASES: readonly string[] = ['predictions', 'Logits'];

/**
 * Every weighted layer of the MobileNetV2 base in Keras order (Conv1 .. Conv_1_bn), with the legacy
 * names of the release files: block 0 is `mobl0_conv_0_*` / `bn0_conv_0_bn_*`, block i
 * `mobl{i}_conv_{i}_*` / `bn{i}_conv_{i}_bn_*`.
 */
export const BASE_LAYERS: readonly MobileNetLayer[] = (() => {
  const out: MobileNetLayer[] = [
    { name: 'Conv1', legacy: 'Conv1', cls: 'conv2d' },
    { name: 'bn_Conv1', legacy: 'bn_Conv1', cls: 'batch_normalization' },
  ];
  for (let i = 0; i < BLOCKS.length; i++) {
    const prefix = i === 0 ? 'expanded_conv_' : `block_${i}_`;
    const parts = i === 0 ? (['depthwise', 'project'] as const) : (['expand', 'depthwise', 'project'] as const);
    for (const part of parts) {
      out.push({
        name: `${prefix}${part}`,
        legacy: `mobl${i}_conv_${i}_${part}`,
        cls: part === 'depthwise' ? 'depthwise_conv2d' : 'conv2d',
      });
      out.push({ name: `${prefix}${part}_BN`, legacy: `bn${i}_conv_${i}_bn_${part}`, cls: 'batch_normalization' });
    }
  }
  out.push({ name: 'Conv_1', legacy: 'Conv_1', cls: 'conv2d' }, { name: 'Conv_1_bn', legacy: 'Conv_1_bn', cls: 'batch_normalization' });
  return out;
})();

export const TOP: MobileNetLayer = { name: TOP_LAYER, legacy: 'Logits', cls: 'dense' };

const BY_NAME = new Map(BASE_LAYERS.map((l, i) => [l.name, i]));
const BY_LEGACY = new Map(BASE_LAYERS.map((l, i) => [l.legacy, i]));

export type NameGeneration = 'modern' | 'legacy' | 'top' | 'unknown';

/** Which naming generation a layer name belongs to, and its index in BASE_LAYERS (-1 for the top). */
export function classifyLayerName(name: string): { generation: NameGeneration; index?: number } {
  if (TOP_ALIASES.includes(name)) return { generation: 'top', index: -1 };
  const modern = BY_NAME.get(name);
  // Conv1, bn_Conv1, Conv_1 and Conv_1_bn are the same in both generations: count them as modern.
  if (modern !== undefined) return { generation: 'modern', index: modern };
  const legacy = BY_LEGACY.get(name);
  if (legacy !== undefined) return { generation: 'legacy', index: legacy };
  return { generation: 'unknown' };
}

export function isBaseLayerName(name: string): boolean {
  return BY_NAME.has(name);
}

/** The shape of every weight of BASE_LAYERS for `alpha` (plus the top for `classes`), in order. */
export function mobileNetWeightShapes(alpha: number, classes?: number): number[][][] {
  const shapes: number[][][] = [];
  const bn = (c: number) => [[c], [c], [c], [c]];
  const first = makeDivisible(32 * alpha);
  shapes.push([[3, 3, 3, first]], bn(first));
  let inC = first;
  BLOCKS.forEach(([filters, , expansion], i) => {
    const out = makeDivisible(Math.trunc(filters * alpha));
    let c = inC;
    if (i > 0) {
      c = inC * expansion;
      shapes.push([[1, 1, inC, c]], bn(c));
    }
    shapes.push([[3, 3, c, 1]], bn(c));
    shapes.push([[1, 1, c, out]], bn(out));
    inC = out;
  });
  const last = alpha > 1.0 ? makeDivisible(1280 * alpha) : 1280;
  shapes.push([[1, 1, inC, last]], bn(last));
  if (classes !== undefined) shapes.push([[last, classes], [classes]]);
  return shapes;
}
