/** One weight array read from a source, float32, row-major in the tfjs/Keras layout. */
export interface WeightArray {
  shape: number[];
  values: Float32Array;
}

export type WeightsKind = 'tfjs' | 'keras-h5' | 'keras-archive' | 'nsfwjs';

/**
 * The file layout: a tfjs layers model, Keras 2's HDF5 (`save_weights`, the keras.applications
 * files; or a full `model.save` with `model_weights`), Keras 3's `.weights.h5`, a Keras 3 `.keras`
 * zip, or the MobileNetV2 bundled in nsfwjs.
 */
export type WeightsFormat = 'tfjs' | 'keras2-weights' | 'keras2-full-model' | 'keras3-weights' | 'keras-archive' | 'nsfwjs';

/** One weighted layer as a source stores it, in source order; weight `name` is the short name (`kernel`) when known. */
export interface FileLayer {
  /** The layer name in the file (or its Keras 3 path when it has no name). */
  name: string;
  weights: Array<WeightArray & { name?: string }>;
}

/** A source's weighted layers as stored, before they are matched to MobileNetV2. */
export interface RawWeights {
  /** What was read, as given or resolved (path, URL, s3:// URI or `nsfwjs`). */
  source: string;
  kind: WeightsKind;
  format: WeightsFormat;
  /** sha256 of the source bytes: the weight shards (tfjs, nsfwjs) or the whole file (.h5, .keras). */
  sha256: string;
  layers: FileLayer[];
  /** Keras 3 without layer names: how the order was rebuilt (shown in the match summary). */
  unnamedHow?: string;
  /** Layers left out before matching (outside the MobileNetV2 container of a nested Keras 3 model). */
  ignored: string[];
  /** What else was found (nesting, the model config of a .keras archive), for logs and `weights inspect`. */
  notes: string[];
  warning?: string;
}

/** Weights matched to MobileNetV2, keyed `<layer>/<weight>` by today's names (e.g. `block_13_expand/kernel`). */
export interface SourceWeights extends Omit<RawWeights, 'layers'> {
  weights: Map<string, WeightArray>;
  alpha: number;
  /** Whether the ImageNet top (`predictions`, or `Logits` in the release files) is in the source. */
  top: boolean;
  naming: 'modern' | 'legacy' | 'mixed' | 'unnamed';
  /** How the source was matched, e.g. `260 tensors: legacy names mapped, order checked, alpha 0.35`. */
  how: string;
}

/** Groups `<layer>/<weight>`-keyed weights into layers, in first-appearance order. */
export function layersFromKeyed(weights: ReadonlyMap<string, WeightArray>): FileLayer[] {
  const out = new Map<string, FileLayer>();
  for (const [key, w] of weights) {
    const i = key.lastIndexOf('/');
    const layer = key.slice(0, i);
    const l = out.get(layer) ?? { name: layer, weights: [] };
    out.set(layer, l);
    l.weights.push({ ...w, name: key.slice(i + 1) });
  }
  return [...out.values()];
}

/**
 * `Conv1/kernel:0`, `mobilenetv2_1.00_224/Conv1/kernel`, `Conv1/kernel_1` -> `Conv1/kernel`:
 * the last two path parts, without the TF `:0` suffix or a tfjs uniquifying `_N`
 * (no MobileNetV2 weight short name ends in `_<digits>`).
 */
export function weightKey(name: string, layerName?: string): string {
  const parts = name.replace(/:\d+$/, '').split('/');
  const short = (parts.at(-1) ?? '').replace(/_\d+$/, '');
  const layer = layerName ?? parts.at(-2) ?? '';
  return `${layer}/${short}`;
}

export function sizeOf(shape: readonly number[]): number {
  return shape.reduce((a, b) => a * b, 1);
}
