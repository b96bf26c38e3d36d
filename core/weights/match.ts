import { ALPHAS } from '../mobilenet-v2.js';
import { formatAlpha, inferAlpha } from './alpha.js';
import { BaseWeightsMismatchError } from './apply.js';
import {
  BASE_LAYERS,
  CLASS_WEIGHTS,
  classifyLayerName,
  type LayerClass,
  type MobileNetLayer,
  mobileNetWeightShapes,
  TOP,
  TOP_LAYER,
} from './mobilenet-layers.js';
import { type FileLayer, type SourceWeights, sizeOf, type WeightArray } from './types.js';

/** How a file's names relate to MobileNetV2's. */
export type Naming = SourceWeights['naming'];

export interface MatchResult {
  /** Keyed `<modern layer>/<weight>`; the top is `predictions/*` whatever the file called it. */
  weights: Map<string, WeightArray>;
  alpha: number;
  top: boolean;
  naming: Naming;
  /** Human summary, e.g. `260 tensors: legacy names mapped, order checked`. */
  how: string;
  /** Weighted layers of the file that are not MobileNetV2's (a classifier head): not loaded. */
  ignored: string[];
}

export class WeightsMatchError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'WeightsMatchError';
  }
}

const fmtShapes = (shapes: ReadonlyArray<readonly number[]>) => shapes.map((s) => `[${s}]`).join(' ');
const sameShape = (a: readonly number[], b: readonly number[]) => a.length === b.length && a.every((d, i) => d === b[i]);

function describe(layer: MobileNetLayer): string {
  return layer.legacy === layer.name ? layer.name : `${layer.name} (legacy ${layer.legacy})`;
}

/** The alpha whose MobileNetV2 shapes the file's base layers have, in order; or the first offending pair. */
function inferAlphaInOrder(base: FileLayer[]): { alpha: number } | { error: string } {
  let best: { alpha: number; at: number } | undefined;
  for (const alpha of ALPHAS) {
    const want = mobileNetWeightShapes(alpha);
    let at = 0;
    while (
      at < Math.min(base.length, want.length) &&
      base[at].weights.length === want[at].length &&
      base[at].weights.every((w, j) => sameShape(w.shape, want[at][j]))
    )
      at++;
    if (at === want.length && base.length === want.length) return { alpha };
    if (!best || at > best.at) best = { alpha, at };
  }
  const { alpha, at } = best as { alpha: number; at: number };
  const want = mobileNetWeightShapes(alpha);
  if (at >= base.length || at >= want.length) {
    return {
      error:
        `layer count mismatch: the file has ${base.length} weighted MobileNetV2 base layers, the model ${want.length}` +
        (at < want.length ? `; the first missing is #${at} ${describe(BASE_LAYERS[at])}` : `; #${at} ${base[at]?.name} is extra`),
    };
  }
  return {
    error:
      `no MobileNetV2 alpha (${ALPHAS.map(formatAlpha).join(', ')}) has these shapes; closest is alpha ${formatAlpha(alpha)}, ` +
      `which differs first at weighted layer #${at}: file layer ${base[at].name} ${fmtShapes(base[at].weights.map((w) => w.shape))} ` +
      `vs model layer ${describe(BASE_LAYERS[at])} ${fmtShapes(want[at])}` +
      (at > 0 ? ` (layers #0-#${at - 1} fit alpha ${formatAlpha(alpha)})` : ''),
  };
}

/** A layer's weights in Keras order (by short name when the file names them, else as stored). */
function ordered(layer: FileLayer, cls: LayerClass, where: string): WeightArray[] {
  const names = CLASS_WEIGHTS[cls];
  if (layer.weights.length !== names.length) {
    throw new WeightsMatchError(
      `${where}: file layer ${layer.name} has ${layer.weights.length} weight(s), a ${cls} layer has ${names.length} (${names.join(', ')})`,
    );
  }
  const byName = new Map(layer.weights.map((w) => [w.name, w]));
  if (names.every((n) => byName.has(n))) return names.map((n) => byName.get(n) as WeightArray);
  return layer.weights;
}

function checkValues(w: WeightArray, key: string): void {
  if (w.values.length !== sizeOf(w.shape)) throw new WeightsMatchError(`${key}: ${w.values.length} values for shape [${w.shape}]`);
}

/** Today's key of every weight of a named file layer (by short name when the file has them, else by position). */
function keysOf(layer: FileLayer, ref: MobileNetLayer): Array<[string, WeightArray]> {
  const names = CLASS_WEIGHTS[ref.cls];
  const byName = layer.weights.every((w) => w.name && names.includes(w.name));
  return layer.weights.map((w, j) => [`${ref.name}/${byName ? w.name : (names[j] ?? `#${j}`)}`, w]);
}

/**
 * Matches a file's weighted layers to MobileNetV2 the way Keras' load_weights does, but never
 * silently mis-assigns: all names MobileNetV2's (today's or the release files' legacy names, even
 * mixed) -> by name, with the file order checked against Keras' for legacy/mixed names; otherwise
 * by order (Keras' `load_weights_from_hdf5_group`), with every weight's shape checked. Alpha comes
 * from the shapes in order. Layers with other names beside a complete named base (a classifier
 * head) are ignored and listed. Throws WeightsMatchError naming the first offending pair, or
 * BaseWeightsMismatchError listing every missing and mismatched weight of a named file.
 */
export function matchMobileNetV2(layers: FileLayer[], opts: { unnamedHow?: string; source?: string } = {}): MatchResult {
  const byIndex = new Map<number, FileLayer>();
  let topLayer: FileLayer | undefined;
  const dupes: string[] = [];
  const unknown: FileLayer[] = [];
  let legacyCount = 0;
  let modernCount = 0;
  for (const layer of layers) {
    const c = classifyLayerName(layer.name);
    if (c.generation === 'unknown') unknown.push(layer);
    else if (c.generation === 'top') {
      if (topLayer) dupes.push(`${layer.name} (and ${topLayer.name})`);
      topLayer = layer;
    } else {
      const i = c.index as number;
      if (byIndex.has(i)) dupes.push(`${layer.name} (and ${byIndex.get(i)?.name})`);
      byIndex.set(i, layer);
      // Conv1, bn_Conv1, Conv_1, Conv_1_bn are the same in both generations.
      if (BASE_LAYERS[i].legacy !== BASE_LAYERS[i].name) {
        if (c.generation === 'legacy') legacyCount++;
        else modernCount++;
      }
    }
  }
  if (dupes.length) throw new WeightsMatchError(`the file names a MobileNetV2 layer twice: ${dupes.join(', ')}`);

  // Named: the whole base is named, or every name is MobileNetV2's (then what is missing is listed).
  const named = byIndex.size === BASE_LAYERS.length || (byIndex.size > 0 && unknown.length === 0);
  let base: FileLayer[];
  let top: FileLayer | undefined;
  let ignored: string[] = [];
  let naming: Naming;
  if (named) {
    base = BASE_LAYERS.flatMap((_, i) => byIndex.get(i) ?? []);
    top = topLayer;
    ignored = unknown.map((l) => l.name);
    naming = legacyCount === 0 ? 'modern' : modernCount === 0 ? 'legacy' : 'mixed';
    if (naming !== 'modern') {
      // Keras loads these files by order: make sure the names and the order tell the same story.
      const filePos = new Map(layers.map((l, i) => [l, i]));
      for (let i = 1; i < base.length; i++) {
        if ((filePos.get(base[i]) as number) < (filePos.get(base[i - 1]) as number)) {
          throw new WeightsMatchError(
            `the file's layer order disagrees with its ${naming} names: ${base[i].name} comes before ${base[i - 1].name} ` +
              `(file weighted layers #${filePos.get(base[i])} and #${filePos.get(base[i - 1])}); Keras loads such a file by order and would mis-assign them, so it is refused`,
          );
        }
      }
    }
  } else {
    // Unknown names: Keras' topological load. The top is one more two-weight layer at the end.
    naming = 'unnamed';
    const n = BASE_LAYERS.length;
    if (layers.length === n + 1 && layers[n].weights.length === 2) {
      base = layers.slice(0, n);
      top = layers[n];
    } else if (layers.length === n) base = layers;
    else {
      const r = inferAlphaInOrder(layers.slice(0, n));
      throw new WeightsMatchError(
        `the file's layer names are not MobileNetV2's, so it can only be matched by order as Keras does, and its weighted layer count ` +
          `(${layers.length}) is neither ${n} (no top) nor ${n + 1} (with top)` +
          ('error' in r ? `; ${r.error}` : ''),
      );
    }
  }

  const out = new Map<string, WeightArray>();
  let alpha: number;
  if (naming === 'unnamed') {
    const inferred = inferAlphaInOrder(base);
    if ('error' in inferred) throw new WeightsMatchError(inferred.error);
    alpha = inferred.alpha;
    base.forEach((layer, i) => {
      const ref = BASE_LAYERS[i];
      ordered(layer, ref.cls, `weighted layer #${i} (${describe(ref)})`).forEach((w, j) => {
        const key = `${ref.name}/${CLASS_WEIGHTS[ref.cls][j]}`;
        checkValues(w, key);
        out.set(key, w);
      });
    });
  } else {
    for (const [i, layer] of byIndex) for (const [key, w] of keysOf(layer, BASE_LAYERS[i])) out.set(key, w);
    const inferred = inferAlphaInOrder(base);
    if ('alpha' in inferred) alpha = inferred.alpha;
    else {
      // Incomplete or misshapen: take alpha from the names (as before) and list every problem.
      try {
        alpha = inferAlpha(out);
      } catch (e) {
        throw new WeightsMatchError(`${(e as Error).message}; by order: ${inferred.error}`);
      }
      const want = mobileNetWeightShapes(alpha);
      const missing: string[] = [];
      const mismatched: string[] = [];
      BASE_LAYERS.forEach((ref, i) => {
        CLASS_WEIGHTS[ref.cls].forEach((wname, j) => {
          const key = `${ref.name}/${wname}`;
          const got = out.get(key);
          if (!got) missing.push(key);
          else if (!sameShape(got.shape, want[i][j])) mismatched.push(`${key}: model [${want[i][j]}] vs weights [${got.shape}]`);
        });
      });
      const label = opts.source ? `The weights from ${opts.source}` : 'The weights';
      const lines = [
        `${label} do not fit MobileNetV2 alpha ${formatAlpha(alpha)} (${missing.length} missing, ${mismatched.length} mismatched); by order: ${inferred.error}.`,
      ];
      if (missing.length) lines.push(`Missing:\n${missing.map((m) => `  - ${m}`).join('\n')}`);
      if (mismatched.length) lines.push(`Shape mismatch:\n${mismatched.map((m) => `  - ${m}`).join('\n')}`);
      if (missing.length || mismatched.length) throw new BaseWeightsMismatchError(lines.join('\n'), missing, mismatched);
      throw new WeightsMatchError(inferred.error);
    }
    base.forEach((layer, i) => {
      for (const [key, w] of keysOf(layer, BASE_LAYERS[i])) checkValues(w, key);
    });
  }
  if (top) {
    const last = out.get('Conv_1_bn/gamma')?.shape[0] as number;
    const w = ordered(top, 'dense', `the top (${top.name})`);
    if (w[0].shape.length !== 2 || w[0].shape[0] !== last || !sameShape(w[1].shape, [w[0].shape[1]])) {
      throw new WeightsMatchError(
        `weighted layer #${BASE_LAYERS.length}: file layer ${top.name} ${fmtShapes(w.map((x) => x.shape))} vs model layer ${TOP.name} ([${last}, classes] [classes])`,
      );
    }
    w.forEach((x, j) => {
      checkValues(x, `${TOP_LAYER}/${CLASS_WEIGHTS.dense[j]}`);
      out.set(`${TOP_LAYER}/${CLASS_WEIGHTS.dense[j]}`, x);
    });
  }
  const how = {
    modern: 'matched by name',
    legacy: 'legacy names mapped, order checked',
    mixed: `mixed names (${legacyCount} legacy, ${modernCount} modern) mapped, order checked`,
    unnamed: opts.unnamedHow ?? 'names unknown: matched by order as Keras does, every shape checked',
  }[naming];
  const topNote = top ? `, ImageNet top ${top.name === TOP_LAYER ? TOP_LAYER : `${top.name} -> ${TOP_LAYER}`}` : '';
  const ignoredNote = ignored.length ? `; ignored ${ignored.length} layer(s) not in MobileNetV2: ${ignored.join(', ')}` : '';
  return {
    weights: out,
    alpha,
    top: !!top,
    naming,
    how: `${out.size} tensors: ${how}${topNote}, alpha ${formatAlpha(alpha)}${ignoredNote}`,
    ignored,
  };
}
