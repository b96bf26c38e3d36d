import { existsSync, readdirSync } from 'node:fs';
import path from 'node:path';
import { edgetuneConfig } from '../config.js';
import { ALPHAS } from '../mobilenet-v2.js';
import { formatAlpha } from './alpha.js';
import { kerasModelsDir } from './cache.js';

export const KERAS_WEIGHTS_BASE_URL = 'https://storage.googleapis.com/tensorflow/keras-applications/mobilenet_v2/';
/** keras.applications publishes MobileNetV2 weights for these sizes; other sizes use the 224 file. */
export const KERAS_SIZES = [96, 128, 160, 192, 224] as const;

/** keras.applications' weights size for an input size (like Keras: not one of KERAS_SIZES -> 224). */
export function kerasWeightsSize(inputSize: number): number {
  return (KERAS_SIZES as readonly number[]).includes(inputSize) ? inputSize : 224;
}

/** `mobilenet_v2_weights_tf_dim_ordering_tf_kernels_{alpha}_{size}[_no_top].h5` */
export function kerasWeightsFileName(alpha: number, inputSize: number, includeTop = false): string {
  if (!ALPHAS.includes(alpha as (typeof ALPHAS)[number])) throw new Error(`alpha must be one of ${ALPHAS.join(', ')}; got ${alpha}`);
  return `mobilenet_v2_weights_tf_dim_ordering_tf_kernels_${formatAlpha(alpha)}_${kerasWeightsSize(inputSize)}${includeTop ? '' : '_no_top'}.h5`;
}

/** The official download URL; EDGETUNE_KERAS_WEIGHTS_URL replaces the base (a mirror). */
export function kerasWeightsUrl(alpha: number, inputSize: number, includeTop = false): string {
  const base = edgetuneConfig().EDGETUNE_KERAS_WEIGHTS_URL || KERAS_WEIGHTS_BASE_URL;
  return base.replace(/\/?$/, '/') + kerasWeightsFileName(alpha, inputSize, includeTop);
}

/**
 * Official files for `alpha` already in ~/.keras/models, best first: the exact size (no-top, then
 * with-top: it holds the same base), then other sizes (same shapes; trained at another resolution).
 * With `includeTop`, only files with the top qualify.
 */
export function cachedKerasWeights(alpha: number, inputSize: number, includeTop = false): string[] {
  const dir = kerasModelsDir();
  if (!existsSync(dir)) return [];
  const present = new Set(readdirSync(dir));
  const size = kerasWeightsSize(inputSize);
  const sizes = [size, ...KERAS_SIZES.filter((s) => s !== size).sort((a, b) => Math.abs(a - size) - Math.abs(b - size))];
  const out: string[] = [];
  for (const s of sizes) {
    for (const top of includeTop ? [true] : [false, true]) {
      const name = kerasWeightsFileName(alpha, s, top);
      if (present.has(name)) out.push(path.join(dir, name));
    }
  }
  return out;
}
