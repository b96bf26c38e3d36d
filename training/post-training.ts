// After the phases: the trained model's pooled embeddings and logits of the un-augmented training
// and validation images, from which come the temperature (fitted on validation logits), the
// open-set class means (training embeddings) and threshold (validation distances), and the review
// lists (misclassified validation photos, highest-loss training photos, near-duplicates).
// Works from cached activations and file paths; holds no decoded image of its own.

import { HEAD } from '../core/classifier.js';
import { availableCores } from '../core/engine/cpu.js';
import { createFastForward, type FastForward } from '../core/fast-forward.js';
import { argmax, temperedProbabilities } from '../core/head-convention.js';
import type { Calibration, OpenSet } from '../core/manifest.js';
import { encodeFloat32 } from '../core/open-set-score.js';
import { tf } from '../core/tf.js';
import { calibrate } from './calibration.js';
import { similarPairs } from './near-duplicates.js';
import { chooseThreshold, fitMahalanobis, scoreRows as openSetScores } from './open-set.js';
import { deriveSeed } from './rng.js';
import { memoryStore, type RowStore } from './row-store.js';
import type { PhaseContext, TrainingRows, ValidationFeatures } from './train-phases.js';

/** Default share of in-class validation photos the open-set threshold accepts. */
export const OPEN_SET_TARGET = 0.95;
/** Near-duplicates: cosine similarity of the pooled embeddings at or above this. */
export const DUPLICATE_SIMILARITY = 0.97;
/** Above this many images the O(n^2) near-duplicate search is skipped (and the review says so). */
export const DUPLICATE_MAX_IMAGES = 6000;
const LIST = 24;

export interface ReviewPhoto {
  path: string;
  label: string;
  predicted: string;
  /** Calibrated probability of the predicted class. */
  probability: number;
  /** Cross-entropy of the true label (calibrated). */
  loss: number;
  /** Open-set distance to the nearest class mean. */
  distance: number;
}

export interface DuplicatePair {
  a: string;
  b: string;
  labelA: string;
  labelB: string;
  similarity: number;
  kind: 'across-classes' | 'across-split';
}

/** What the report's gallery and `review.json` show. */
export interface ReviewData {
  classes: string[];
  misclassified: ReviewPhoto[];
  highestLoss: ReviewPhoto[];
  duplicates: DuplicatePair[];
  duplicateSearch: string;
}

export interface PostTraining {
  calibration: Calibration;
  openSet: OpenSet;
  review: ReviewData;
}

interface Scored {
  embeddings: Float32Array;
  logits: number[][];
  dim: number;
}

/** Pooled embeddings and logits of n rows (boundary activations, or pooled features). */
type Scorer = {
  score(x: Float32Array, n: number, shape: readonly number[]): Promise<{ pooled: Float32Array; logits: Float32Array }>;
  dispose(): Promise<void>;
};

/**
 * tfjs: the fused WASM forward from the boundary to the pooled features (none when phase 2 did not
 * run: the rows are the pooled features), then the `logits` layer (the dropout between them is the
 * identity at inference).
 */
function tfjsScorer(ctx: PhaseContext, fineTuned: boolean): Scorer {
  const ff: FastForward | undefined = fineTuned ? createFastForward(ctx.model) : undefined;
  const dense = ctx.model.getLayer(HEAD.logits);
  return {
    async score(x, n, shape) {
      const [pooled, z] = tf.tidy(() => {
        const p = ff ? ff.forward(tf.tensor(x, [n, ...shape]), { from: ctx.boundary, to: HEAD.pool }) : tf.tensor2d(x, [n, shape[0]]);
        return [p, dense.apply(p, { training: false }) as tf.Tensor];
      });
      const out = { pooled: pooled.dataSync() as Float32Array, logits: z.dataSync() as Float32Array };
      tf.dispose([pooled, z]);
      return out;
    },
    async dispose() {
      ff?.dispose();
    },
  };
}

/**
 * onnxruntime, when the run's tail products ran there: the trained tail from the boundary to the
 * pooled features and logits as one ONNX graph, on every core (the frozen-layer workers are idle by
 * now). Its values differ from tfjs' in the last float32 bits, like the tail's products do.
 */
async function ortScorer(ctx: PhaseContext): Promise<Scorer> {
  const { engineOnnx, ortEngineFromOnnx } = await import('../core/engine/ort-engine.js');
  const bytes = engineOnnx(ctx.model, [HEAD.pool, HEAD.logits], ctx.boundary);
  const shape = ctx.model.getLayer(ctx.boundary).outputShape.slice(1) as number[];
  const engine = await ortEngineFromOnnx(bytes, shape, availableCores());
  return {
    async score(x, n) {
      const [pooled, logits] = await engine.run(x, n, [HEAD.pool, HEAD.logits]);
      return { pooled: pooled.data, logits: logits.data };
    },
    dispose: () => engine.dispose(),
  };
}

/**
 * Pooled embeddings and logits of the rows of `block` through the trained model, starting at the
 * freeze boundary, or at the pooled features themselves when phase 2 did not run.
 */
async function scoreRows(scorer: Scorer, block: RowStore, batch = 32): Promise<Scored> {
  const n = block.rows;
  let embeddings = new Float32Array(0);
  const logits: number[][] = [];
  let dim = 0;
  for (let s = 0; s < n; s += batch) {
    const idx = Array.from({ length: Math.min(batch, n - s) }, (_, i) => s + i);
    const { pooled: p, logits: l } = await scorer.score(block.gather(idx), idx.length, block.shape);
    dim = p.length / idx.length;
    if (!embeddings.length) embeddings = new Float32Array(n * dim);
    embeddings.set(p, s * dim);
    const units = l.length / idx.length;
    for (let i = 0; i < idx.length; i++) logits.push(Array.from(l.subarray(i * units, (i + 1) * units)));
  }
  return { embeddings, logits, dim };
}

const POST_CHUNK = 256;

function concatScored(parts: Scored[]): Scored {
  const dim = parts.find((p) => p.dim)?.dim ?? 0;
  const embeddings = new Float32Array(parts.reduce((a, p) => a + p.embeddings.length, 0));
  let o = 0;
  for (const p of parts) {
    embeddings.set(p.embeddings, o);
    o += p.embeddings.length;
  }
  return { embeddings, logits: parts.flatMap((p) => p.logits), dim };
}

/**
 * The post-training step: one call from train() after the phases, with the final weights written back.
 * Scores the un-augmented training rows phase 1 kept (`rows`) when it kept them, else runs the
 * frozen layers over the training images once more (an augmented phase 1, a resumed run).
 */
export async function postTraining(ctx: PhaseContext, val: ValidationFeatures, rows: TrainingRows = {}): Promise<PostTraining> {
  const { opts, data, report } = ctx;
  const numClasses = data.classes.length;
  const fineTuned = opts.fineTuneEpochs > 0 && val.boundary !== undefined;
  const from = fineTuned ? ctx.boundary : HEAD.pool;
  report({ type: 'stage', stage: 'features (training images, after training)', total: data.train.length });
  const valBlock: RowStore = fineTuned
    ? (val.boundary as RowStore)
    : memoryStore({ data: val.pooled, shape: [val.dim], rows: data.validation.length });
  const scorer = fineTuned && ctx.tailGemm === 'ort' ? await ortScorer(ctx) : tfjsScorer(ctx, fineTuned);
  let tr: Scored;
  let va: Scored;
  try {
    // The training images a chunk at a time (they may be on disk): only embeddings and logits are kept.
    const parts: Scored[] = [];
    const kept = fineTuned ? rows.boundary : rows.pooled;
    if (kept && kept.rows === data.train.length) {
      for (let s = 0; s < kept.rows; s += POST_CHUNK) {
        const idx = Array.from({ length: Math.min(POST_CHUNK, kept.rows - s) }, (_, i) => s + i);
        parts.push(await scoreRows(scorer, memoryStore({ data: kept.gather(idx), shape: kept.shape, rows: idx.length })));
        report({ type: 'progress', stage: 'features', done: s + idx.length, total: data.train.length });
      }
    }
    for (let s = parts.length ? data.train.length : 0; s < data.train.length; s += POST_CHUNK) {
      const images = await data.train.read(s, s + POST_CHUNK);
      const block = await ctx.extractor.compute(
        images,
        images.map(() => null),
        from,
        (done) => report({ type: 'progress', stage: 'features', done: s + done, total: data.train.length }),
      );
      parts.push(await scoreRows(scorer, memoryStore(block)));
    }
    tr = concatScored(parts);
    va = await scoreRows(scorer, valBlock);
  } finally {
    await scorer.dispose();
  }

  const valLabels = data.validationLabels;
  const calibration = calibrate(
    va.logits,
    valLabels,
    numClasses,
    `validation split (${data.validation.length} images)`,
    10,
    opts.temperature === 'fit',
  );
  const { identity, ...fit } = fitMahalanobis(tr.embeddings, tr.dim, data.trainLabels, numClasses);
  if (identity) {
    report({
      type: 'warning',
      message:
        'open-set: the training photos of each class embed identically (no spread to fit a covariance on); the unknown score is a plain distance to the class means',
    });
  }
  const stats = { metric: 'mahalanobis-shared-lowrank' as const, dim: tr.dim, ...fit };
  const valDist = openSetScores(va.embeddings, stats);
  const trainDist = openSetScores(tr.embeddings, stats);
  const thr = chooseThreshold(
    valDist,
    OPEN_SET_TARGET,
    `validation split (${data.validation.length} images)`,
    deriveSeed(opts.seed, 'open-set'),
  );
  const openSet: OpenSet = {
    metric: stats.metric,
    layer: HEAD.pool,
    dim: tr.dim,
    means: encodeFloat32(fit.means),
    meansFrom: `training split (${data.train.length} images, un-augmented, after training; ${identity ? 'no spread: identity covariance' : `covariance on ${fit.rows} of them`})`,
    rank: fit.rank,
    basis: encodeFloat32(fit.basis),
    variances: encodeFloat32(fit.variances),
    residual: fit.residual,
    shrinkage: fit.shrinkage,
    ...thr,
  };
  report({
    type: 'info',
    message: `calibration: T = ${calibration.temperature.toFixed(3)} (ECE ${calibration.eceBefore.toFixed(3)} -> ${calibration.eceAfter.toFixed(3)}, fitted on the ${calibration.fittedOn}); open-set threshold ${thr.threshold.toFixed(4)} (95% interval ${thr.interval[0].toFixed(4)}-${thr.interval[1].toFixed(4)}) accepts ${(100 * thr.accepted).toFixed(1)}% of the validation photos`,
  });

  const T = calibration.temperature;
  const photo = (path: string, y: number, z: number[], d: number): ReviewPhoto => {
    const p = temperedProbabilities(z, numClasses, T);
    const k = argmax(p);
    return {
      path,
      label: data.classes[y],
      predicted: data.classes[k],
      probability: p[k],
      loss: -Math.log(Math.max(p[y], 1e-12)),
      distance: d,
    };
  };
  const valPhotos = data.validation.files.map((f, i) => photo(f.relPath, valLabels[i], va.logits[i], valDist[i]));
  const trainPhotos = data.train.files.map((f, i) => photo(f.relPath, data.trainLabels[i], tr.logits[i], trainDist[i]));
  const misclassified = valPhotos.filter((p) => p.label !== p.predicted).sort((a, b) => b.loss - a.loss);
  const highestLoss = [...trainPhotos].sort((a, b) => b.loss - a.loss).slice(0, LIST);

  const all = [
    ...data.train.files.map((f) => ({ path: f.relPath, label: f.label, split: 0 })),
    ...data.validation.files.map((f) => ({ path: f.relPath, label: f.label, split: 1 })),
  ];
  let duplicates: DuplicatePair[] = [];
  let duplicateSearch = `cosine similarity >= ${DUPLICATE_SIMILARITY} of the pooled embeddings, across classes and across the split`;
  if (all.length <= DUPLICATE_MAX_IMAGES) {
    const embeddings = new Float32Array(all.length * tr.dim);
    embeddings.set(tr.embeddings.subarray(0, data.train.length * tr.dim));
    embeddings.set(va.embeddings.subarray(0, data.validation.length * tr.dim), data.train.length * tr.dim);
    duplicates = similarPairs(
      embeddings,
      tr.dim,
      DUPLICATE_SIMILARITY,
      (i, j) => all[i].label !== all[j].label || all[i].split !== all[j].split,
    )
      .map(
        ({ i, j, similarity }): DuplicatePair => ({
          a: all[i].path,
          b: all[j].path,
          labelA: data.classes[all[i].label],
          labelB: data.classes[all[j].label],
          similarity,
          kind: all[i].label !== all[j].label ? 'across-classes' : 'across-split',
        }),
      )
      .sort((a, b) => b.similarity - a.similarity)
      .slice(0, 4 * LIST);
  } else {
    duplicateSearch = `skipped: ${all.length} images is over the ${DUPLICATE_MAX_IMAGES}-image limit of the pairwise search`;
  }
  return { calibration, openSet, review: { classes: data.classes, misclassified, highestLoss, duplicates, duplicateSearch } };
}

/** `review.json` beside the model: what the report's gallery shows and `edgetune review` starts from. */
export async function writeReview(outDir: string, review: ReviewData): Promise<void> {
  const { mkdir, writeFile } = await import('node:fs/promises');
  const path = await import('node:path');
  await mkdir(outDir, { recursive: true });
  await writeFile(path.join(outDir, 'review.json'), `${JSON.stringify(review, null, 1)}\n`);
}
