import type { LayersModel } from '@tensorflow/tfjs';
import { tf } from '../tf.js';
import { formatAlpha as fmt, inferAlpha } from './alpha.js';
import { isBaseLayerName, TOP_LAYER } from './mobilenet-layers.js';
import { sizeOf, type WeightArray, weightKey } from './types.js';

export { isBaseLayerName, TOP_LAYER };

export class BaseWeightsMismatchError extends Error {
  constructor(
    message: string,
    readonly missing: string[],
    readonly mismatched: string[],
  ) {
    super(message);
    this.name = 'BaseWeightsMismatchError';
  }
}

type AnyLayer = LayersModel['layers'][number];

/** Every layer holding weights, descending into nested models (a base used as one layer). */
function weightedLayers(layers: AnyLayer[]): AnyLayer[] {
  const out: AnyLayer[] = [];
  for (const layer of layers) {
    const nested = (layer as unknown as { layers?: AnyLayer[] }).layers;
    if (Array.isArray(nested)) out.push(...weightedLayers(nested));
    else if (layer.weights.length > 0) out.push(layer);
  }
  return out;
}

/** `<layer>/<weight>` -> shape of every weight of `model`. */
export function modelWeightShapes(model: LayersModel): Map<string, number[]> {
  const shapes = new Map<string, number[]>();
  for (const layer of weightedLayers(model.layers)) {
    for (const w of layer.weights) shapes.set(weightKey(w.originalName, layer.name), w.shape as number[]);
  }
  return shapes;
}

export interface ApplyResult {
  /** Number of weight tensors set. */
  count: number;
  /** Whether the ImageNet `predictions` layer was loaded too. */
  top: boolean;
}

function describeList(items: string[], max = 25): string {
  const shown = items.slice(0, max).map((s) => `  - ${s}`);
  if (items.length > max) shown.push(`  ... and ${items.length - max} more`);
  return shown.join('\n');
}

/**
 * Sets every MobileNetV2 base weight of `model` by layer and weight name. All of them must be in
 * `weights` with the same shape, else nothing is set and a BaseWeightsMismatchError lists what is
 * missing or mismatched. `predictions/*` is loaded when the model has that layer with the same
 * shape; other layers (the classifier head) are left as they are.
 */
export function applyBaseWeights(model: LayersModel, weights: ReadonlyMap<string, WeightArray>, sourceLabel = 'the weights'): ApplyResult {
  const missing: string[] = [];
  const mismatched: string[] = [];
  const plan: Array<{ layer: AnyLayer; values: WeightArray[] }> = [];
  let top = false;
  let baseLayers = 0;
  for (const layer of weightedLayers(model.layers)) {
    const isBase = isBaseLayerName(layer.name);
    if (!isBase && layer.name !== TOP_LAYER) continue;
    if (isBase) baseLayers++;
    const values: WeightArray[] = [];
    const problems: { missing: string[]; mismatched: string[] } = { missing: [], mismatched: [] };
    for (const w of layer.weights) {
      const key = weightKey(w.originalName, layer.name);
      const src = weights.get(key);
      const want = w.shape as number[];
      if (!src) problems.missing.push(key);
      else if (src.shape.length !== want.length || src.shape.some((d, i) => d !== want[i])) {
        problems.mismatched.push(`${key}: model [${want}] vs weights [${src.shape}]`);
      } else if (src.values.length !== sizeOf(want)) {
        problems.mismatched.push(`${key}: ${src.values.length} values for shape [${want}]`);
      } else values.push(src);
    }
    if (!isBase) {
      // The ImageNet top is optional: load it only when it fits completely.
      if (problems.missing.length === 0 && problems.mismatched.length === 0) {
        plan.push({ layer, values });
        top = true;
      }
      continue;
    }
    missing.push(...problems.missing);
    mismatched.push(...problems.mismatched);
    plan.push({ layer, values });
  }
  if (baseLayers === 0) {
    throw new Error('the model has no MobileNetV2 base layers (Conv1 ... Conv_1_bn): is it a buildMobileNetV2 / buildClassifier model?');
  }
  if (missing.length || mismatched.length) {
    let hint = '';
    try {
      const have = inferAlpha(weights);
      const want = inferAlpha(modelWeightShapes(model));
      if (have !== want)
        hint = `\nThe weights are MobileNetV2 alpha ${fmt(have)} but the model is alpha ${fmt(want)}: build the model with alpha ${fmt(have)} or use weights for alpha ${fmt(want)}.`;
    } catch {
      // no alpha hint possible: the lists below say enough
    }
    const parts = [
      `${sourceLabel} do not fit the model's MobileNetV2 base (${missing.length} missing, ${mismatched.length} mismatched).${hint}`,
    ];
    if (missing.length) parts.push(`Missing:\n${describeList(missing)}`);
    if (mismatched.length) parts.push(`Shape mismatch:\n${describeList(mismatched)}`);
    throw new BaseWeightsMismatchError(parts.join('\n'), missing, mismatched);
  }
  let count = 0;
  for (const { layer, values } of plan) {
    tf.tidy(() => layer.setWeights(values.map((v) => tf.tensor(v.values, v.shape, 'float32'))));
    count += values.length;
  }
  return { count, top };
}
