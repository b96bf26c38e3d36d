import { BLOCKS } from '../../core/mobilenet-v2.js';

/**
 * Names of keras.applications.MobileNetV2's layers (include_top=False) in Keras index order:
 * 0 = input_1, 119 = block_13_expand_relu, 120 = block_13_pad, 154 = out_relu. The names do not
 * depend on alpha (a residual add exists exactly where a block repeats its filter count at
 * stride 1).
 */
export function baseLayerNames(): string[] {
  const names = ['input_1', 'Conv1_pad', 'Conv1', 'bn_Conv1', 'Conv1_relu'];
  BLOCKS.forEach(([filters, stride], id) => {
    const p = id === 0 ? 'expanded_conv_' : `block_${id}_`;
    if (id > 0) names.push(`${p}expand`, `${p}expand_BN`, `${p}expand_relu`);
    if (stride === 2) names.push(`${p}pad`);
    names.push(`${p}depthwise`, `${p}depthwise_BN`, `${p}depthwise_relu`, `${p}project`, `${p}project_BN`);
    if (id > 0 && stride === 1 && BLOCKS[id - 1][0] === filters) names.push(`${p}add`);
  });
  names.push('Conv_1', 'Conv_1_bn', 'out_relu');
  return names;
}

/**
 * The layer whose output is cached for `fineTuneAt` (Keras base index of the first trainable
 * layer, as in the notebook's `base_model.layers[fine_tune_at:]`): base layer `fineTuneAt - 1`.
 */
export function boundaryLayerName(fineTuneAt: number): string {
  const names = baseLayerNames();
  if (!Number.isInteger(fineTuneAt) || fineTuneAt < 1 || fineTuneAt >= names.length) {
    throw new Error(`fineTuneAt must be an integer in 1..${names.length - 1} (Keras base layer index); got ${fineTuneAt}`);
  }
  return names[fineTuneAt - 1];
}
