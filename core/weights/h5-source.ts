import { readFile } from 'node:fs/promises';
import path from 'node:path';
import type { LayersModel } from '@tensorflow/tfjs';
import { sha256Hex } from './cache.js';
import { BASE_LAYERS } from './mobilenet-layers.js';
import { type FileLayer, type RawWeights, type WeightArray, type WeightsFormat, weightKey } from './types.js';

type H5 = typeof import('h5wasm/node');
type H5Group = InstanceType<H5['Group']>;

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
  if (v instanceof Uint8Array) return [Buffer.from(v).toString('utf8').replace(/\0+$/, '')].filter(Boolean);
  // Keras writes an empty list for a weightless layer: numpy makes that an empty float64 array.
  if (ArrayBuffer.isView(v)) return Array.from(v as unknown as ArrayLike<number>, String);
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

/** What kind of .h5 a file is, from its structure. */
export type H5Layout = Extract<WeightsFormat, 'keras2-weights' | 'keras2-full-model' | 'keras3-weights'>;

export interface H5Layers {
  layout: H5Layout;
  layers: FileLayer[];
  /** Keras 3 files without layer names: how their order was rebuilt (for the match summary). */
  unnamedHow?: string;
  /** Layers outside the MobileNetV2 container (a head), already left out. */
  ignored: string[];
  notes: string[];
}

/** `<scope...>/<layer>/<weight>:0` -> [layer, weight] (the TF `:0` and a tfjs `_N` dropped). */
export function splitWeightName(name: string): [string | undefined, string] {
  const parts = name.replace(/:\d+$/, '').split('/');
  const short = (parts.at(-1) ?? '').replace(/_\d+$/, '');
  return [parts.length > 1 ? parts.at(-2) : undefined, short];
}

function readArray(lib: H5, ds: unknown, where: string): WeightArray {
  if (!(ds instanceof lib.Dataset)) throw new Error(`${where} is not a dataset`);
  const shape = ds.shape ?? [];
  return { shape: shape.length ? shape : [1], values: toFloat32(ds.value, where) };
}

/**
 * Keras 2 layout (`load_weights_from_hdf5_group`): root `layer_names`, each layer's group lists
 * `weight_names`; layers with none hold no weights. A nested model (a Teachable Machine base under
 * `sequential_1`) is one group whose weight names carry the inner layers' names: split it into
 * those layers, in order of first appearance (Keras lists a trainable nested model's weights
 * trainable first, so a BatchNorm's moving stats come later; grouping by name restores each layer).
 */
function readKeras2(lib: H5, root: H5Group, file: string, notes: string[]): FileLayer[] {
  const layerNames = readStringAttr(root, 'layer_names') ?? [];
  const out: FileLayer[] = [];
  for (const layer of layerNames) {
    const group = root.get(layer);
    if (!(group instanceof lib.Group)) throw new Error(`${file}: layer_names lists ${layer} but there is no such group`);
    const names = readStringAttr(group, 'weight_names') ?? [];
    if (names.length === 0) continue;
    const inner = new Map<string, FileLayer>();
    for (const n of names) {
      const [owner, short] = splitWeightName(n);
      const key = owner ?? layer;
      const l = inner.get(key) ?? { name: key, weights: [] };
      inner.set(key, l);
      l.weights.push({ ...readArray(lib, group.get(n), `${file}: ${layer}/${n}`), name: short });
    }
    // A plain layer whose weights are scoped by another name (renamed on save) keeps its group name.
    if (inner.size === 1) out.push({ ...[...inner.values()][0], name: layer });
    else {
      notes.push(`nested model ${layer} (${inner.size} weighted layers)`);
      out.push(...inner.values());
    }
  }
  return out;
}

interface Keras3Leaf {
  path: string;
  /** The layer name Keras >= 3.6 stores as the `name` attribute of `vars`. */
  name?: string;
  cls: string;
  index: number;
  weights: WeightArray[];
}

function keras3Leaves(lib: H5, group: H5Group, at: string, out: Map<string, Keras3Leaf[]>): void {
  const vars = group.keys().includes('vars') ? group.get('vars') : undefined;
  if (vars instanceof lib.Group) {
    const keys = vars.keys().filter((k) => /^\d+$/.test(k));
    if (keys.length) {
      keys.sort((a, b) => Number(a) - Number(b));
      const segment = at.split('/').at(-1) ?? '';
      const m = /^(.*?)(?:_(\d+))?$/.exec(segment) as RegExpExecArray;
      const name = readStringAttr(vars, 'name')?.[0];
      const container = at.split('/').slice(0, -1).join('/');
      const list = out.get(container) ?? [];
      list.push({
        path: at,
        name,
        cls: m[1],
        index: m[2] ? Number(m[2]) : 0,
        weights: keys.map((k) => readArray(lib, vars.get(k), `${at}/vars/${k}`)),
      });
      out.set(container, list);
    }
  }
  const layers = group.keys().includes('layers') ? group.get('layers') : undefined;
  if (layers instanceof lib.Group) {
    for (const k of layers.keys()) {
      const child = layers.get(k);
      if (child instanceof lib.Group) keras3Leaves(lib, child, at ? `${at}/layers/${k}` : `layers/${k}`, out);
    }
  }
}

/**
 * Keras 3 `.weights.h5` (saving_lib's H5IOStore): `layers/<class>[_N]/vars/<i>`, nested models as
 * `layers/<class>/layers/...`. Paths come from class names, not layer names; Keras >= 3.6 also
 * stores the layer name as an attribute of `vars`. Without names the order is rebuilt as Keras 3
 * loads: the k-th MobileNetV2 layer of a class is `<class>_k` of the container holding the base.
 */
function readKeras3(lib: H5, f: H5Group, file: string): Omit<H5Layers, 'layout'> {
  const containers = new Map<string, Keras3Leaf[]>();
  keras3Leaves(lib, f, '', containers);
  const all = [...containers.values()].flat();
  if (all.length === 0) throw new Error(`${file} has a Keras 3 layout but no layers/<name>/vars datasets`);
  const notes: string[] = [];
  if (all.every((l) => l.name)) {
    return { layers: all.map((l) => ({ name: l.name as string, weights: l.weights })), ignored: [], notes };
  }
  const baseKey = [...containers].find(([, leaves]) =>
    leaves.some((l) => l.cls === 'conv2d' && l.index === 0 && l.weights[0]?.shape[2] === 3),
  )?.[0];
  if (baseKey === undefined)
    throw new Error(`${file}: no Keras 3 container holds a first conv2d with 3 input channels (a MobileNetV2 base)`);
  const byClass = new Map<string, Keras3Leaf[]>();
  for (const l of containers.get(baseKey) ?? []) byClass.set(l.cls, [...(byClass.get(l.cls) ?? []), l]);
  for (const list of byClass.values()) list.sort((a, b) => a.index - b.index);
  const layers: FileLayer[] = [];
  for (const ref of BASE_LAYERS) {
    const next = byClass.get(ref.cls)?.shift();
    if (!next)
      throw new Error(
        `${file}: the container ${baseKey || '(root)'} has too few ${ref.cls} layers for MobileNetV2 (none left for ${ref.name})`,
      );
    layers.push({ name: next.name ?? next.path, weights: next.weights });
  }
  const dense = byClass.get('dense') ?? [];
  if (dense.length === 1) layers.push({ name: dense[0].name ?? dense[0].path, weights: dense[0].weights });
  const left = [...byClass.values()].flat().filter((l) => l.cls !== 'dense' || dense.length !== 1);
  if (left.length)
    throw new Error(
      `${file}: ${left.length} layer(s) of the MobileNetV2 container are left over: ${left
        .map((l) => l.path)
        .slice(0, 5)
        .join(', ')}`,
    );
  const ignored = [...containers].filter(([k]) => k !== baseKey).flatMap(([, leaves]) => leaves.map((l) => l.path));
  if (baseKey !== 'layers') notes.push(`MobileNetV2 nested at ${baseKey || '(root)'}`);
  return {
    layers,
    ignored,
    notes,
    unnamedHow: 'Keras 3 paths without layer names: matched by class order as Keras 3 loads them, every shape checked',
  };
}

/**
 * The end-of-file address the HDF5 superblock (at offset 0) records, or undefined when it cannot
 * be read. A shorter file is truncated; checked before opening because the HDF5 library fails
 * later and vaguely on one.
 */
export function hdf5StoredEof(bytes: Buffer): number | undefined {
  const version = bytes[8];
  let at: number;
  let sizeOfOffsets: number;
  if (version === 0 || version === 1) {
    sizeOfOffsets = bytes[13];
    // fixed fields (24 bytes; v1 has 4 more), then base, free-space and end-of-file addresses
    at = (version === 0 ? 24 : 28) + 2 * sizeOfOffsets;
  } else if (version === 2 || version === 3) {
    sizeOfOffsets = bytes[9];
    at = 12 + 2 * sizeOfOffsets;
  } else return undefined;
  if (![4, 8].includes(sizeOfOffsets) || bytes.length < at + sizeOfOffsets) return undefined;
  return sizeOfOffsets === 8 ? Number(bytes.readBigUInt64LE(at)) : bytes.readUInt32LE(at);
}

/** Opens an HDF5 file and reads its weighted layers in file order (Keras 2 or Keras 3 layout). */
export async function readH5Layers(file: string): Promise<H5Layers & { sha256: string }> {
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
  const eof = hdf5StoredEof(bytes);
  if (eof !== undefined && bytes.length < eof) {
    throw new Error(`${abs} is truncated: ${bytes.length} bytes, its HDF5 superblock says ${eof} (an interrupted download or copy?)`);
  }
  const lib = await h5wasm();
  let f: InstanceType<H5['File']>;
  try {
    f = new lib.File(abs, 'r');
  } catch (e) {
    throw new Error(`${abs} is not a readable HDF5 file (truncated or damaged?): ${(e as Error).message}`);
  }
  try {
    const keys = f.keys();
    const mw = keys.includes('model_weights') ? f.get('model_weights') : undefined;
    const root: H5Group = mw instanceof lib.Group ? mw : f;
    if (readStringAttr(root, 'layer_names')) {
      const notes: string[] = [];
      const layers = readKeras2(lib, root, abs, notes);
      return { layout: mw ? 'keras2-full-model' : 'keras2-weights', layers, ignored: [], notes, sha256: sha256Hex(bytes) };
    }
    if (keys.includes('layers') || keys.includes('vars'))
      return { layout: 'keras3-weights', ...readKeras3(lib, f, abs), sha256: sha256Hex(bytes) };
    throw new Error(`${abs} holds no Keras weights (no layer_names attribute, no Keras 3 layers/ group)`);
  } catch (e) {
    const msg = (e as Error).message;
    throw msg.includes(abs) ? e : new Error(`${abs}: cannot read (truncated or damaged?): ${msg}`);
  } finally {
    f.close();
  }
}

/** Reads a Keras .h5 (Keras 2 weights or full model, or Keras 3 `.weights.h5`) as stored. */
export async function readKerasH5Weights(file: string, source = file): Promise<RawWeights> {
  const r = await readH5Layers(file);
  const notes = [...r.notes];
  if (r.layout === 'keras2-full-model') notes.unshift('a full Keras model (weights under model_weights)');
  return {
    source,
    kind: 'keras-h5',
    format: r.layout,
    sha256: r.sha256,
    layers: r.layers,
    unnamedHow: r.unnamedHow,
    ignored: r.ignored,
    notes,
  };
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
