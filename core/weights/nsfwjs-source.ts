import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import type { io } from '@tensorflow/tfjs';
import { z } from 'zod';
import { sha256Hex } from './cache.js';
import { isBaseLayerName } from './mobilenet-layers.js';
import { decodeTfjsWeights } from './tfjs-source.js';
import { layersFromKeyed, type RawWeights } from './types.js';

export const NSFWJS_SOURCE = 'nsfwjs';

export const NSFWJS_WARNING =
  'WARNING: using the MobileNetV2 (alpha 1.0) bundled in the nsfwjs npm package as base weights. ' +
  'Its upper blocks were re-trained by nsfwjs for other classes (drawings/hentai/neutral/porn/sexy), so they ' +
  'are NOT ImageNet features: a linear probe on the alpaca data measured 0.62-0.65 validation accuracy with ' +
  'them against 0.89-0.95 with the ImageNet alpha 0.35 weights. Pass --base-weights (or set ' +
  'EDGETUNE_BASE_WEIGHTS) to a tfjs model.json or Keras .h5 with ImageNet weights for real results.';

const require = createRequire(import.meta.url);

/** nsfwjs' `exports` map blocks deep imports and package.json: find its folder from its main entry. */
export function nsfwjsDir(): string {
  let entry: string;
  try {
    entry = require.resolve('nsfwjs');
  } catch {
    throw new Error('the nsfwjs npm package is not installed: it is the offline fallback for base weights (npm ci installs it)');
  }
  let dir = path.dirname(entry);
  while (!existsSync(path.join(dir, 'dist', 'models', 'mobilenet_v2', 'model.min.js'))) {
    const up = path.dirname(dir);
    if (up === dir) throw new Error(`nsfwjs is installed at ${path.dirname(entry)} but dist/models/mobilenet_v2/model.min.js is not in it`);
    dir = up;
  }
  return dir;
}

const BundledModelSchema = z
  .object({
    weightsManifest: z
      .array(z.object({ weights: z.array(z.object({ name: z.string(), shape: z.array(z.number()), dtype: z.string() }).passthrough()) }))
      .length(1),
  })
  .passthrough();

/**
 * nsfwjs' MobileNetV2 (Keras 2.2.4 names, uint8-quantized): the base layers only, up to out_relu.
 * Its own loader builds the whole graph (~6 s, 600 MB); requiring the two bundled files is ~130 ms.
 */
export function readNsfwjsWeights(): RawWeights {
  const folder = path.join(nsfwjsDir(), 'dist', 'models', 'mobilenet_v2');
  const model = BundledModelSchema.parse(require(path.join(folder, 'model.min.js')));
  const shard: unknown = require(path.join(folder, 'group1-shard1of1.min.js'));
  if (typeof shard !== 'string') throw new Error(`${folder}/group1-shard1of1.min.js did not export a base64 string`);
  const bytes = Buffer.from(shard, 'base64');
  const all = decodeTfjsWeights(bytes, model.weightsManifest[0].weights as io.WeightsManifestEntry[]);
  const weights = new Map([...all].filter(([key]) => isBaseLayerName(key.split('/')[0])));
  return {
    source: NSFWJS_SOURCE,
    kind: 'nsfwjs',
    format: 'nsfwjs',
    sha256: sha256Hex(bytes),
    layers: layersFromKeyed(weights),
    ignored: [],
    notes: [],
    warning: NSFWJS_WARNING,
  };
}
