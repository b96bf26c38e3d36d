/** One weight array read from a source, float32, row-major in the tfjs/Keras layout. */
export interface WeightArray {
  shape: number[];
  values: Float32Array;
}

export type WeightsKind = 'tfjs' | 'keras-h5' | 'nsfwjs';

/** Weights read from a source, keyed `<layer>/<weight>` (e.g. `block_13_expand/kernel`). */
export interface SourceWeights {
  /** What was read, as given or resolved (path, URL, s3:// URI or `nsfwjs`). */
  source: string;
  kind: WeightsKind;
  /** sha256 of the source bytes: the weight shards (tfjs, nsfwjs) or the whole .h5 file. */
  sha256: string;
  weights: Map<string, WeightArray>;
  warning?: string;
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
