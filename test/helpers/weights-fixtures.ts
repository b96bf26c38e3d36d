// Small weight files for the weights tests, written from models built in the test (no shared data).
import { mkdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import type { LayersModel } from '@tensorflow/tfjs';
import { weightKey } from '../../core/weights/types.js';

export interface KeyedArray {
  shape: number[];
  values: Float32Array;
}

/** Every weight of `model`, keyed `<layer>/<weight>`. */
export function keyedWeights(model: LayersModel): Map<string, KeyedArray> {
  const out = new Map<string, KeyedArray>();
  for (const layer of model.layers) {
    for (const w of layer.weights) {
      out.set(weightKey(w.originalName, layer.name), { shape: w.shape as number[], values: w.read().dataSync() as Float32Array });
    }
  }
  return out;
}

/** Writes a weights-only tfjs model.json + weights.bin (what loadBaseWeights reads) into `dir`. */
export async function writeTfjsWeights(dir: string, weights: Map<string, KeyedArray>, opts: { prefix?: string } = {}): Promise<string> {
  await mkdir(dir, { recursive: true });
  const specs = [...weights].map(([name, w]) => ({ name: `${opts.prefix ?? ''}${name}`, shape: w.shape, dtype: 'float32' }));
  const data = Buffer.concat([...weights.values()].map((w) => Buffer.from(w.values.buffer, w.values.byteOffset, w.values.byteLength)));
  await writeFile(path.join(dir, 'weights.bin'), data);
  const file = path.join(dir, 'model.json');
  await writeFile(
    file,
    JSON.stringify({ format: 'layers-model', modelTopology: null, weightsManifest: [{ paths: ['weights.bin'], weights: specs }] }),
  );
  return file;
}

/** Deterministic non-trivial values so a load that skipped a weight would show. */
export function fillDistinct(weights: Map<string, KeyedArray>, seed = 1): Map<string, KeyedArray> {
  const out = new Map<string, KeyedArray>();
  let i = seed;
  for (const [k, w] of weights) {
    const values = new Float32Array(w.values.length);
    for (let j = 0; j < values.length; j++) values[j] = Math.sin(i++ * 0.37) * 0.5;
    out.set(k, { shape: w.shape, values });
  }
  return out;
}
