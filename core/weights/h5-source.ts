import { readFile } from 'node:fs/promises';
import path from 'node:path';
import type { LayersModel } from '@tensorflow/tfjs';
import { sha256Hex } from './cache.js';
import { type SourceWeights, type WeightArray, weightKey } from './types.js';

type H5 = typeof import('h5wasm/node');
type H5Group = InstanceType<H5['Group']>;
type H5Dataset = InstanceType<H5['Dataset']>;

let h5: Promise<H5> | undefined;
/** h5wasm's Node build reads the host filesystem directly (NODERAWFS). Loaded on first use. */
export async function h5wasm(): Promise<H5> {
  h5 ??= import('h5wasm/node').then(async (m) => {
    const mod = ((m as unknown as { default?: H5 }).default ?? m) as H5;
    await mod.ready;
    return mod;
  });
  return h5;
}

function asStrings(v: unknown): string[] {
  if (v == null) return [];
  if (typeof v === 'string') return [v];
  if (Array.isArray(v)) return v.flatMap(asStrings);
  if (v instanceof Uint8Array) return [Buffer.from(v).toString('utf8').replace(/\0+$/, '')];
  return [String(v)];
}

/**
 * Keras splits attributes over 64 KB into `name0`, `name1`, ...
 * (load_attributes_from_hdf5_group); read either form.
 */
function readStringAttr(group: H5Group, name: string): string[] | undefined {
  const attrs = group.attrs;
  if (name in attrs) return asStrings(attrs[name].value);
  if (`${name}0` in attrs) {
    const out: string[] = [];
    for (let i = 0; `${name}${i}` in attrs; i++) out.push(...asStrings(attrs[`${name}${i}`].value));
    return out;
  }
  return undefined;
}

function toFloat32(v: unknown, where: string): Float32Array {
  if (v instanceof Float32Array) return v;
  if (v instanceof Float64Array || v instanceof Int32Array || v instanceof Uint8Array || v instanceof Int16Array)
    return Float32Array.from(v);
  if (typeof v === 'number') return Float32Array.of(v);
  throw new Error(`dataset ${where} is not numeric`);
}

function datasetsUnder(lib: H5, group: H5Group, prefix = ''): Array<[string, H5Dataset]> {
  const out: Array<[string, H5Dataset]> = [];
  for (const name of group.keys()) {
    const entity = group.get(name);
    const rel = prefix ? `${prefix}/${name}` : name;
    if (entity instanceof lib.Dataset) out.push([rel, entity]);
    else if (entity instanceof lib.Group) out.push(...datasetsUnder(lib, entity, rel));
  }
  return out;
}

/**
 * Reads a Keras HDF5 weights file (`model.save_weights('x.h5')`, the keras.applications files) or a
 * full-model .h5 (weights under `model_weights`): one group per layer, attribute `weight_names`
 * (e.g. `Conv1/kernel:0`), one dataset per weight at `<layer>/<weight name>`.
 */
export async function readKerasH5Weights(file: string): Promise<SourceWeights> {
  const abs = path.resolve(file);
  let bytes: Buffer;
  try {
    bytes = await readFile(abs);
  } catch (e) {
    throw new Error(`cannot read Keras weights ${abs}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
  }
  if (bytes.length < 8 || bytes.subarray(0, 8).toString('latin1') !== '\x89HDF\r\n\x1a\n') {
    throw new Error(`${abs} is not an HDF5 file (bad signature)`);
  }
  const lib = await h5wasm();
  const f = new lib.File(abs, 'r');
  try {
    const mw = f.get('model_weights');
    const root: H5Group = mw instanceof lib.Group ? mw : f;
    const layerNames = readStringAttr(root, 'layer_names') ?? root.keys();
    const weights = new Map<string, WeightArray>();
    for (const layer of layerNames) {
      const group = root.get(layer);
      if (!(group instanceof lib.Group)) continue;
      const names = readStringAttr(group, 'weight_names');
      const entries: Array<[string, unknown]> = names ? names.map((n) => [n, group.get(n)]) : datasetsUnder(lib, group);
      for (const [name, ds] of entries) {
        if (!(ds instanceof lib.Dataset)) throw new Error(`${abs}: layer ${layer} lists weight ${name} but has no such dataset`);
        const shape = ds.shape ?? [];
        weights.set(weightKey(name, layer), { shape: shape.length ? shape : [1], values: toFloat32(ds.value, `${layer}/${name}`) });
      }
    }
    if (weights.size === 0) throw new Error(`${abs} holds no Keras layer weights (expected groups with a weight_names attribute)`);
    return { source: file, kind: 'keras-h5', sha256: sha256Hex(bytes), weights };
  } finally {
    f.close();
  }
}

export interface KerasLayerWeights {
  name: string;
  /** Keras weight names without the layer scope and `:0`, e.g. `kernel`, `moving_mean`. */
  weights: Array<{ name: string; shape: number[]; values: Float32Array }>;
}

/** A model's layers and weights in Keras save order, for writeKerasH5Weights. */
export function kerasLayerWeights(model: LayersModel): KerasLayerWeights[] {
  return model.layers.map((layer) => ({
    name: layer.name,
    weights: layer.weights.map((w) => ({
      name: weightKey(w.originalName, layer.name).split('/')[1],
      shape: w.shape as number[],
      values: w.read().dataSync() as Float32Array,
    })),
  }));
}

/**
 * Writes weights in the Keras HDF5 layout (`model.save_weights('x.h5')`, what keras.applications
 * publishes): root attributes layer_names/backend/keras_version, one group per layer with a
 * `weight_names` attribute (`<layer>/<weight>:0`) and datasets at `<layer>/<layer>/<weight>:0`.
 * `modelWeights` nests everything under `model_weights`, as a full `model.save('x.h5')` does.
 */
export async function writeKerasH5Weights(file: string, layers: KerasLayerWeights[], opts: { modelWeights?: boolean } = {}): Promise<void> {
  const lib = await h5wasm();
  const f = new lib.File(path.resolve(file), 'w');
  try {
    const root: H5Group = opts.modelWeights ? f.create_group('model_weights') : f;
    const fixed = (names: string[]) => `S${Math.max(1, ...names.map((n) => Buffer.byteLength(n)))}`;
    const layerNames = layers.map((l) => l.name);
    root.create_attribute('layer_names', layerNames, [layerNames.length], fixed(layerNames));
    root.create_attribute('backend', 'tensorflow');
    root.create_attribute('keras_version', '2.2.4');
    for (const layer of layers) {
      const g = root.create_group(layer.name);
      if (layer.weights.length === 0) continue;
      const names = layer.weights.map((w) => `${layer.name}/${w.name}:0`);
      g.create_attribute('weight_names', names, [names.length], fixed(names));
      const scope = g.create_group(layer.name);
      for (const w of layer.weights) scope.create_dataset({ name: `${w.name}:0`, data: w.values, shape: w.shape, dtype: '<f' });
    }
  } finally {
    f.close();
  }
}
