// `edgetune cv`: stratified k-fold evaluation over all images, each fold a full train() with the
// fold as its validation split, repeated for each seed. The un-augmented views of an image are the
// same in every fold and every seed (the frozen layers do not train), so their pooled and boundary
// activations are computed once and shared; augmented phase-2 views are computed per fold.
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import type { RgbImage } from '../core/image.js';
import type { LayersModel } from '../core/tf.js';
import type { AugmentDraw } from './augment.js';
import { type Summary, summarize } from './cv-stats.js';
import { type DatasetFile, type DatasetListing, type DecodedImage, listDataset, type Split } from './dataset.js';
import { modelArtifacts } from './export.js';
import { type FeatureBlock, type FeatureExtractor, InProcessExtractor, LayerExtractor, PoolExtractor } from './features.js';
import type { TrainOptions } from './options.js';
import type { Reporter } from './progress.js';
import { createRng, shuffleInPlace } from './rng.js';
import { train } from './train.js';

/** Stratified folds: each class shuffled with the seed and dealt round-robin, so every fold keeps the class proportions. */
export function stratifiedFolds(listing: DatasetListing, k: number, seed: number): Split[] {
  if (!Number.isInteger(k) || k < 2) throw new Error(`--folds must be an integer >= 2; got ${k}`);
  const smallest = Math.min(...listing.classes.map((_, c) => listing.files.filter((f) => f.label === c).length));
  if (smallest < k) throw new Error(`--folds ${k}: the smallest class has ${smallest} image(s); every fold needs one of each class`);
  const rng = createRng(seed);
  const folds: DatasetFile[][] = Array.from({ length: k }, () => []);
  let next = 0;
  for (let c = 0; c < listing.classes.length; c++) {
    // Continue the deal where the previous class stopped, so fold sizes differ by at most one.
    for (const f of shuffleInPlace(
      listing.files.filter((x) => x.label === c),
      rng,
    )) {
      folds[next].push(f);
      next = (next + 1) % k;
    }
  }
  return folds.map((validation, i) => ({ train: folds.flatMap((f, j) => (j === i ? [] : f)), validation, test: [] }));
}

/**
 * Shares the activations of un-augmented views across the runs of one `cv` (keyed by file and
 * layer). A view missing from the cache is computed for every layer ever asked for un-augmented,
 * so the first fold's passes fill the cache for all later folds. Augmented views pass through.
 */
export class SharedViewCache {
  private readonly rows = new Map<string, Map<string, Float32Array | Uint16Array>>();
  private readonly shapes = new Map<string, number[]>();
  private readonly layers = new Set<string>();
  /** Views computed by the frozen layers, and views served from the cache. */
  readonly stats = { computed: 0, reused: 0 };

  wrap(ex: FeatureExtractor): FeatureExtractor {
    return new CachedExtractor(ex, this);
  }

  /** Rows of `layers` for un-augmented `images`, computing only those not cached yet. */
  async get(ex: FeatureExtractor, images: readonly RgbImage[], layers: readonly string[], onProgress?: (done: number) => void) {
    for (const l of layers) this.layers.add(l);
    const key = (img: RgbImage) => (img as Partial<DecodedImage>).file?.relPath;
    const missing = images.filter((img) => {
      const k = key(img);
      return k === undefined || layers.some((l) => !this.rows.get(l)?.has(k));
    });
    if (missing.length) {
      const all = [...this.layers];
      const blocks = await ex.computeLayers(
        missing,
        missing.map(() => null),
        all,
        onProgress,
      );
      this.stats.computed += missing.length;
      for (const [li, l] of all.entries()) {
        const b = blocks[li];
        const dim = b.shape.reduce((a, c) => a * c, 1);
        this.shapes.set(l, b.shape);
        let m = this.rows.get(l);
        if (!m) {
          m = new Map();
          this.rows.set(l, m);
        }
        for (const [i, img] of missing.entries()) {
          const k = key(img);
          if (k !== undefined) m.set(k, b.data.slice(i * dim, (i + 1) * dim));
        }
      }
      // Views without a file (not a dataset image) cannot be cached: use the fresh block as is.
      if (missing.some((img) => key(img) === undefined)) {
        if (missing.length !== images.length) throw new Error('cv cache: mixed cached and uncached views');
        return layers.map((l) => blocks[all.indexOf(l)]);
      }
    }
    this.stats.reused += images.length - missing.length;
    return layers.map((l): FeatureBlock => {
      const shape = this.shapes.get(l) as number[];
      const dim = shape.reduce((a, c) => a * c, 1);
      const m = this.rows.get(l) as Map<string, Float32Array | Uint16Array>;
      const first = m.get(key(images[0]) as string) as Float32Array | Uint16Array;
      const data = first instanceof Float32Array ? new Float32Array(images.length * dim) : new Uint16Array(images.length * dim);
      for (const [i, img] of images.entries()) data.set(m.get(key(img) as string) as Float32Array & Uint16Array, i * dim);
      return { data, shape, rows: images.length };
    });
  }
}

class CachedExtractor extends LayerExtractor {
  constructor(
    private readonly ex: FeatureExtractor,
    private readonly cache: SharedViewCache,
  ) {
    super();
  }

  get description(): string {
    return `${this.ex.description}, un-augmented views shared across folds`;
  }

  async computeLayers(
    images: readonly RgbImage[],
    draws: readonly (AugmentDraw | null)[],
    layers: readonly string[],
    onProgress?: (done: number) => void,
  ): Promise<FeatureBlock[]> {
    if (images.length && draws.every((d) => d === null)) return this.cache.get(this.ex, images, layers, onProgress);
    return this.ex.computeLayers(images, draws, layers, onProgress);
  }

  close(): Promise<void> {
    return this.ex.close();
  }
}

export interface CvOptions {
  folds: number;
  /** One k-fold per seed (the seed shuffles the folds and seeds training). */
  seeds: number[];
  /** Keep each fold's model folder here; default: a temporary folder, removed afterwards. */
  out?: string;
}

export interface FoldResult {
  seed: number;
  fold: number;
  train: number;
  validation: number;
  accuracy: number;
  auc?: number;
  valLoss: number;
  seconds: number;
}

export interface CvResult {
  folds: number;
  seeds: number[];
  images: number;
  runs: FoldResult[];
  accuracy: Summary;
  auc?: Summary;
  /** False when --restore-best or --patience chose epochs on the very fold that scores them. */
  selectionFree: boolean;
  /** Frozen-layer views computed vs served from the shared cache (un-augmented views only). */
  views: { computed: number; reused: number };
  note: string;
}

/** k-fold (per seed) over every image of `opts.data`; `opts.out`, `opts.publish` and `opts.checkpoint` are ignored. */
export async function crossValidate(opts: TrainOptions, cv: CvOptions, report: Reporter): Promise<CvResult> {
  if (opts.testSplit) throw new Error('cv: --test-split does not apply (every image is validated once per seed)');
  if (opts.data.startsWith('s3://')) throw new Error('cv: give a local dataset folder');
  const listing = await listDataset(opts.data);
  const cache = new SharedViewCache();
  const root = cv.out ?? (await mkdtemp(path.join(os.tmpdir(), 'edgetune-cv-')));
  const runs: FoldResult[] = [];
  const factory = async (model: LayersModel, alpha: number): Promise<FeatureExtractor> =>
    cache.wrap(
      opts.workers === 0
        ? new InProcessExtractor(model)
        : new PoolExtractor({ artifacts: await modelArtifacts(model), alpha, inputSize: opts.imageSize, workers: opts.workers }),
    );
  try {
    for (const seed of cv.seeds) {
      const splits = stratifiedFolds(listing, cv.folds, seed);
      for (const [i, split] of splits.entries()) {
        const t0 = performance.now();
        report({
          type: 'info',
          message: `cv: seed ${seed}, fold ${i + 1}/${cv.folds} (${split.train.length} train, ${split.validation.length} validation)`,
        });
        const foldOpts: TrainOptions = {
          ...opts,
          seed,
          out: path.join(root, `seed-${seed}-fold-${i + 1}`),
          publish: undefined,
          checkpoint: undefined,
        };
        const r = await train(foldOpts, report, factory, undefined, split);
        r.model.dispose();
        r.close();
        const m = r.manifest.metrics.fineTuned ?? r.manifest.metrics.frozen;
        const run: FoldResult = {
          seed,
          fold: i + 1,
          train: r.manifest.dataset.counts.train,
          validation: r.manifest.dataset.counts.validation,
          accuracy: m.valAccuracy,
          valLoss: m.valLoss,
          ...(m.auc !== undefined ? { auc: m.auc } : {}),
          seconds: (performance.now() - t0) / 1000,
        };
        runs.push(run);
        report({
          type: 'info',
          message: `cv: seed ${seed}, fold ${i + 1}: accuracy ${run.accuracy.toFixed(4)}${run.auc !== undefined ? `, AUC ${run.auc.toFixed(4)}` : ''} (${run.seconds.toFixed(0)} s)`,
        });
      }
    }
  } finally {
    if (!cv.out) await rm(root, { recursive: true, force: true });
  }
  const aucs = runs.flatMap((r) => (r.auc !== undefined ? [r.auc] : []));
  return {
    folds: cv.folds,
    seeds: cv.seeds,
    images: listing.files.length,
    runs,
    accuracy: summarize(runs.map((r) => r.accuracy)),
    ...(aucs.length === runs.length && aucs.length ? { auc: summarize(aucs) } : {}),
    selectionFree: !opts.restoreBest && opts.patience === undefined,
    views: { ...cache.stats },
    note:
      'the interval is mean +- t(0.975, n-1) * std / sqrt(n) over the n fold scores; folds share training images, ' +
      'so it is somewhat narrower than the truth (no Nadeau-Bengio correction)',
  };
}

/** The lines `edgetune cv` prints. */
export function formatCv(r: CvResult): string {
  const line = (name: string, s: Summary) =>
    `${name.padEnd(9)} mean ${s.mean.toFixed(4)}  std ${s.std.toFixed(4)}  95% CI ${s.ci95 ? `[${s.ci95[0].toFixed(4)}, ${s.ci95[1].toFixed(4)}]` : 'n/a'}  (n=${s.n}, min ${s.min.toFixed(4)}, max ${s.max.toFixed(4)})`;
  return [
    `${r.folds}-fold stratified cross-validation over ${r.images} images, seed(s) ${r.seeds.join(', ')}${r.selectionFree ? '' : ' (NOT selection-free: --restore-best/--patience chose epochs on the scored folds)'}`,
    ...r.runs.map(
      (x) =>
        `  seed ${x.seed} fold ${x.fold}: accuracy ${x.accuracy.toFixed(4)}${x.auc !== undefined ? `  AUC ${x.auc.toFixed(4)}` : ''}  (${x.train} train / ${x.validation} validation, ${x.seconds.toFixed(0)} s)`,
    ),
    line('accuracy', r.accuracy),
    ...(r.auc ? [line('AUC', r.auc)] : []),
    `frozen-layer views: ${r.views.computed} computed, ${r.views.reused} reused from the shared un-augmented cache`,
    `note: ${r.note}`,
  ].join('\n');
}
