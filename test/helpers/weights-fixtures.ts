// Weight files for the weights tests: small ones from models built in the test, and Keras layouts written by
// test/fixtures-py/keras_layouts.py (h5py) from weights given to it.
import { spawnSync } from 'node:child_process';
import { mkdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { LayersModel } from '@tensorflow/tfjs';
import { BASE_LAYERS, CLASS_WEIGHTS, type LayerClass, TOP } from '../../core/weights/mobilenet-layers.js';
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

/** A Python 3 with Debian's python3-h5py (Keras' own HDF5 writer), or undefined. */
export const PYTHON_H5PY: string | undefined = ['/usr/bin/python3', 'python3'].find(
  (py) => spawnSync(py, ['-c', 'import h5py, numpy'], { stdio: 'ignore' }).status === 0,
);

const LAYOUTS_PY = path.join(path.dirname(fileURLToPath(import.meta.url)), '../fixtures-py/keras_layouts.py');

/**
 * Dumps MobileNetV2 weights keyed by today's names (e.g. from the shared tfjs weights) as a spec
 * (BASE_LAYERS order, Keras weight order, with the legacy names) and raw float32 values, for
 * keras_layouts.py.
 */
export async function writeFixtureSpec(dir: string, weights: ReadonlyMap<string, KeyedArray>): Promise<{ spec: string; data: string }> {
  await mkdir(dir, { recursive: true });
  const chunks: Buffer[] = [];
  let offset = 0;
  const entry = (l: { name: string; legacy: string; cls: LayerClass }) => ({
    ...l,
    weights: CLASS_WEIGHTS[l.cls].map((w) => {
      const v = weights.get(`${l.name}/${w}`);
      if (!v) throw new Error(`fixture source lacks ${l.name}/${w}`);
      chunks.push(Buffer.from(v.values.buffer, v.values.byteOffset, v.values.byteLength));
      const out = { name: w, shape: v.shape, offset };
      offset += v.values.length;
      return out;
    }),
  });
  const layers = BASE_LAYERS.map(entry);
  const top = weights.has(`${TOP.name}/kernel`) ? entry(TOP) : null;
  const spec = path.join(dir, 'spec.json');
  const data = path.join(dir, 'weights.f32');
  await writeFile(spec, JSON.stringify({ layers, top }));
  await writeFile(data, Buffer.concat(chunks));
  return { spec, data };
}

/** Runs keras_layouts.py (see its docstring for the layouts and flags) and returns `out`. */
export function writeKerasLayout(files: { spec: string; data: string }, out: string, layout: string, flags: string[] = []): string {
  if (!PYTHON_H5PY) throw new Error('no python3 with h5py');
  const r = spawnSync(PYTHON_H5PY, [LAYOUTS_PY, '--spec', files.spec, '--data', files.data, '--out', out, '--layout', layout, ...flags], {
    encoding: 'utf8',
  });
  if (r.status !== 0) throw new Error(`keras_layouts.py ${layout} ${flags.join(' ')} failed: ${r.stderr || r.error?.message}`);
  return out;
}

/** Several writeKerasLayout runs in one Python process (numpy and h5py load once). */
export async function writeKerasLayouts(
  files: { spec: string; data: string },
  jobs: Array<{ out: string; layout: string; flags?: string[] }>,
): Promise<void> {
  if (!PYTHON_H5PY) throw new Error('no python3 with h5py');
  const list = path.join(path.dirname(files.spec), `jobs-${process.pid}-${Date.now()}.json`);
  await writeFile(
    list,
    JSON.stringify(jobs.map((j) => ['--spec', files.spec, '--data', files.data, '--out', j.out, '--layout', j.layout, ...(j.flags ?? [])])),
  );
  const r = spawnSync(PYTHON_H5PY, [LAYOUTS_PY, '--batch', list], { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`keras_layouts.py --batch failed: ${r.stderr || r.error?.message}`);
}
