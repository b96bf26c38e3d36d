// The two phases of train(), on cached activations: phase 1 trains the head on pooled features,
// phase 2 the tail above the freeze boundary on boundary activations. Both end every epoch
// through RunState.finishEpoch.
import { HEAD } from '../core/classifier.js';
import type { EngineName } from '../core/engine/engine.js';
import { ORT_GEMM_MAX_THREADS, setOrtGemmThreads } from '../core/engine/ort-gemm.js';
import { toProbabilities } from '../core/head-convention.js';
import type { Metrics } from '../core/manifest.js';
import type { LayersModel } from '../core/tf.js';
import { tf } from '../core/tf.js';
import { adamPowers, setAdamPowers, setLearningRate } from '../core/tfjs-internals.js';
import type { AugmentConfig, AugmentDraw } from './augment.js';
import { CacheBudget, type RunCache } from './cache-budget.js';
import { epochOrder } from './dataset.js';
import type { FeatureExtractor } from './features.js';
import { fusedAdam } from './fused-adam.js';
import { HeadTrainer } from './head.js';
import { computeMetrics } from './metrics.js';
import type { TrainOptions } from './options.js';
import type { Reporter } from './progress.js';
import { deriveSeed } from './rng.js';
import type { RowStore } from './row-store.js';
import type { RunState } from './run-state.js';
import { learningRateAt } from './schedule.js';
import type { TrainData } from './train-data.js';
import { computeStores } from './view-cache.js';
import { epochDraws } from './views.js';

/** What both phases work on. */
export interface PhaseContext {
  opts: TrainOptions;
  report: Reporter;
  data: TrainData;
  model: LayersModel;
  state: RunState;
  extractor: FeatureExtractor;
  aug: AugmentConfig;
  /** Name of the freeze boundary's layer (phase 2's input). */
  boundary: string;
  /** Where features and views are kept: memory within the budget, the rest on disk. */
  cache: RunCache;
  /** Loss weight per class (--class-weight); undefined: the plain mean loss. */
  classWeights?: number[];
  /** Where the fine-tune tail's 1x1 products run (training/tail/tail-gemm.ts); default wasm. */
  tailGemm?: EngineName;
}

/** The un-augmented validation views, computed once for both phases. */
export interface ValidationFeatures {
  pooled: Float32Array;
  dim: number;
  /** Boundary activations; only when phase 2 runs (the caller disposes them). */
  boundary: RowStore | undefined;
}

/**
 * Un-augmented training rows phase 1 computes anyway, kept for the post-training pass so it does
 * not run the frozen layers over the training images a second time. Filled only when phase 1
 * trains on un-augmented features (the default recipe); the caller disposes `boundary`.
 */
export interface TrainingRows {
  /** Pooled features of the frozen base, [n, dim] (what post-training scores when phase 2 does not run). */
  pooled?: RowStore;
  /** Boundary activations, when phase 2 runs: on disk, so holding them through phase 2 costs no memory. */
  boundary?: RowStore;
}

/** Draws on `inner`'s budget only for what must stay in memory; everything else goes to disk. */
class DiskFirstBudget extends CacheBudget {
  constructor(private readonly inner: CacheBudget) {
    super(inner.total);
  }
  override get inUse(): number {
    return this.inner.inUse;
  }
  override get peak(): number {
    return this.inner.peak;
  }
  override get free(): number {
    return this.inner.free;
  }
  override tryReserve(): boolean {
    return false;
  }
  override take(bytes: number): void {
    this.inner.take(bytes);
  }
  override release(bytes: number): void {
    this.inner.release(bytes);
  }
}

const seconds = (t0: number) => (performance.now() - t0) / 1000;

/** Disposes what `pending` resolves to, if it resolves: rows computed ahead that training stopped before using. */
const disposeWhenSettled = (pending?: Promise<{ dispose(): void }>): Promise<void> | undefined =>
  pending?.then(
    (v) => v.dispose(),
    () => {},
  );

/** Validation pooled features and, when phase 2 follows, their boundary activations, in one pass. */
export async function validationFeatures(ctx: PhaseContext): Promise<ValidationFeatures> {
  const { opts, report, data } = ctx;
  const n = data.validation.length;
  report({ type: 'stage', stage: 'features (validation)', total: n });
  // The frozen-layer workers start only once, here.
  const [pooled, boundary] = await computeStores(
    ctx.extractor,
    data.validation,
    data.validation.files.map(() => null),
    opts.fineTuneEpochs > 0 ? [HEAD.pool, ctx.boundary] : [HEAD.pool],
    {
      cache: ctx.cache,
      name: 'validation',
      memoryOnly: [HEAD.pool],
      onProgress: (done) => report({ type: 'progress', stage: 'features', done, total: n }),
    },
  );
  return { pooled: pooled.float32(), dim: pooled.shape[0], boundary };
}

/**
 * Phase 1: frozen base, head only, on pooled features. Returns the final head's validation metrics.
 * `keep` receives the un-augmented training rows (see TrainingRows) when the phase computes them.
 */
export async function runFrozenPhase(ctx: PhaseContext, val: ValidationFeatures, keep?: TrainingRows): Promise<Metrics> {
  const { opts, report, data, state } = ctx;
  const numClasses = data.classes.length;
  const trainPaths = data.train.files.map((f) => f.relPath);
  const head = new HeadTrainer(ctx.model, numClasses, opts.lr, opts.dropout, deriveSeed(opts.seed, 'dropout:head'), ctx.classWeights);
  const saved = state.takeOptimizer('frozen');
  if (saved) {
    await head.restoreOptimizer(saved, state.adamPowers('frozen'));
    tf.dispose(saved.map((o) => o.tensor));
  }
  const first = state.doneBefore('frozen');
  // A resumed run continues the dropout stream where the interrupted one left it.
  if (first < opts.epochs) head.skipDropoutDraws(first * Math.ceil(data.train.length / opts.batchSize));
  // Which set of views epoch e trains on: its own (exact, like an uncached pipeline), one of
  // `frozenViews` sets cycled over the epochs, or the un-augmented images every epoch.
  const viewSet = (e: number) => (!opts.augmentFrozen ? -1 : opts.frozenViews ? e % opts.frozenViews : e);
  const featureSets = new Map<number, Float32Array>();
  /** Epoch e's pooled features, computed (the un-augmented pass also keeps the rows post-training needs). */
  const compute = (e: number) => {
    const set = viewSet(e);
    const draws = set >= 0 ? epochDraws(trainPaths, ctx.aug, opts.seed, set) : trainPaths.map(() => null);
    report({ type: 'stage', stage: `features (epoch ${state.plan.done('frozen', e)})`, total: data.train.length });
    const keepRows = keep && set < 0 && !keep.pooled;
    const withBoundary = keepRows && opts.fineTuneEpochs > 0 && val.boundary !== undefined;
    return computeStores(ctx.extractor, data.train, draws, withBoundary ? [HEAD.pool, ctx.boundary] : [HEAD.pool], {
      cache: withBoundary ? { ...ctx.cache, budget: new DiskFirstBudget(ctx.cache.budget) } : ctx.cache,
      name: 'pooled',
      memoryOnly: [HEAD.pool],
      rowBytes: val.dim * 4 + (withBoundary ? (val.boundary as RowStore).dim * 4 : 0),
      onProgress: (done) => report({ type: 'progress', stage: 'features', done, total: data.train.length }),
    }).then(([store, boundaryRows]) => ({ store, boundaryRows, keepRows }));
  };
  // With a new set of augmented views every epoch, the workers compute epoch e + 1's while the head
  // trains on epoch e's (as in phase 2): the views are seeded by epoch, so the bits do not change.
  // Always the next epoch's: set after this epoch's views are in featureSets, which it then is not in.
  let next: ReturnType<typeof compute> | undefined;
  const prefetch = (e: number) => {
    const set = viewSet(e);
    if (e >= opts.epochs || set < 0 || featureSets.has(set)) return;
    next = compute(e);
    next.catch(() => {}); // awaited when its epoch starts, or disposed below
  };
  try {
    for (let e = first; e < opts.epochs; e++) {
      const te = performance.now();
      const set = viewSet(e);
      let feats = featureSets.get(set);
      if (!feats) {
        const pending = next ?? compute(e);
        next = undefined;
        const { store, boundaryRows, keepRows } = await pending;
        feats = store.float32();
        if (keepRows && keep) {
          keep.pooled = store;
          keep.boundary = boundaryRows;
        }
        if (set < 0 || opts.frozenViews) featureSets.set(set, feats);
        // Kept only by the map (or this epoch); the budget counts the sets kept.
        else store.dispose();
      }
      prefetch(e + 1);
      const { loss, accuracy } = head.trainEpoch(
        feats,
        val.dim,
        data.trainLabels,
        opts.batchSize,
        opts.seed,
        state.plan.global('frozen', e),
      );
      const metrics = computeMetrics(rows(head.probabilities(val.pooled, val.dim), numClasses), data.validationLabels, data.classes);
      const stop = await state.finishEpoch('frozen', e, {
        loss,
        accuracy,
        metrics,
        seconds: seconds(te),
        writeBack: () => head.writeBack(),
        layers: new Set([HEAD.logits]),
        optimizerWeights: () => head.optimizerWeights(),
        optimizerPowers: () => head.optimizerPowers(),
      });
      if (stop) break;
    }
  } finally {
    // Early stopping (or a failure) leaves the next epoch's views unused.
    await disposeWhenSettled(next?.then(({ store }) => store));
  }
  if (first < opts.epochs) head.writeBack();
  head.dispose();
  if (!state.frozenMetrics) {
    // No head epochs: still evaluate the untrained head so the manifest has figures.
    const h = new HeadTrainer(ctx.model, numClasses, opts.lr, opts.dropout);
    state.frozenMetrics = computeMetrics(rows(h.probabilities(val.pooled, val.dim), numClasses), data.validationLabels, data.classes);
    h.dispose();
  }
  // --restore-best: the phase's best head goes back into the model before phase 2 starts from it.
  return state.endPhase('frozen', state.frozenMetrics);
}

/**
 * Phase 2: fine-tune the tail above the boundary on cached boundary activations. When `keep` has no
 * training boundary rows (phase 1 trained on augmented views), the workers compute them during the
 * last epoch, which has no next epoch's views to compute, for the post-training pass.
 */
export async function runFineTunePhase(ctx: PhaseContext, val: ValidationFeatures, keep?: TrainingRows): Promise<Metrics> {
  const { opts, report, data, state, model, boundary } = ctx;
  const valBoundary = val.boundary as RowStore;
  const numClasses = data.classes.length;
  const trainPaths = data.train.files.map((f) => f.relPath);
  const n = data.train.length;
  const bShape = valBoundary.shape;
  const first = state.doneBefore('fineTune');
  // The workers compute epoch e + 1's views while the tail trains on epoch e's.
  // Each epoch's views are a store of their own (memory within the budget, else a spill file),
  // disposed when the epoch is done.
  // The tail's products run on one thread while the workers have a pass to compute, so they keep a core.
  let passes = 0;
  const gemmThreads = () => {
    if (ctx.tailGemm === 'ort') setOrtGemmThreads(passes > 0 ? 1 : ORT_GEMM_MAX_THREADS);
  };
  /** The boundary rows of the training images with `draws` applied, counted in `passes` while they run. */
  const boundaryPass = (draws: readonly (AugmentDraw | null)[], name: string, onProgress?: (done: number) => void) => {
    passes++;
    const p = computeStores(ctx.extractor, data.train, draws, [boundary], {
      cache: ctx.cache,
      name,
      rowBytes: valBoundary.dim * 4,
      onProgress,
    }).then(([store]) => store);
    const done = () => {
      passes--;
    };
    p.then(done, done); // also: awaited later; if training stops first, the pool's shutdown rejects it
    return p;
  };
  const viewsFor = (e: number, onProgress?: (done: number) => void) =>
    boundaryPass(epochDraws(trainPaths, ctx.aug, opts.seed, state.plan.global('fineTune', e)), `views-${e}`, onProgress);
  let trainingRows: Promise<RowStore> | undefined;
  report({ type: 'stage', stage: `boundary (epoch ${state.plan.done('fineTune', first)})`, total: n });
  // Started before the tail's worker threads, which take a second or so to come up.
  let next =
    first < opts.fineTuneEpochs ? viewsFor(first, (done) => report({ type: 'progress', stage: 'boundary', done, total: n })) : undefined;
  const { createTrainingTail } = await import('./tail/parallel-tail.js');
  const tail = await createTrainingTail(
    model,
    {
      fineTuneAt: opts.fineTuneAt,
      numClasses,
      dropout: opts.dropout,
      seed: deriveSeed(opts.seed, 'dropout:tail'),
      classWeights: ctx.classWeights,
      dropoutDrawsDone: first * Math.ceil(n / opts.batchSize),
      gemm: ctx.tailGemm ?? 'wasm',
    },
    { threads: tailThreads(opts.workers, ctx.tailGemm ?? 'wasm') },
  );
  report({
    type: 'info',
    message: `fine-tune step: ${tail.route} tail on ${tail.threads} thread(s), 1x1 products on ${tail.gemm === 'ort' ? 'onnxruntime' : 'tfjs wasm'}`,
  });
  const optimizer = fusedAdam(opts.fineTuneLr);
  let metrics: Metrics | undefined;
  try {
    const saved = state.takeOptimizer('fineTune');
    if (saved) {
      await optimizer.setWeights(saved);
      tf.dispose(saved.map((o) => o.tensor));
      const powers = state.adamPowers('fineTune');
      if (powers) setAdamPowers(optimizer, powers);
    }
    const tailLayers = new Set(model.layers.slice(model.layers.findIndex((l) => l.name === boundary) + 1).map((l) => l.name));
    for (let e = first; e < opts.fineTuneEpochs; e++) {
      const te = performance.now();
      const views = await next!;
      next = e + 1 < opts.fineTuneEpochs ? viewsFor(e + 1) : undefined;
      if (!next && keep && !keep.boundary && !trainingRows) {
        trainingRows = boundaryPass(
          data.train.files.map(() => null),
          'training-boundary',
        );
      }
      const order = epochOrder(n, opts.seed, state.plan.global('fineTune', e));
      const steps = Math.ceil(order.length / opts.batchSize);
      report({ type: 'stage', stage: `fine-tune epoch ${e + 1}/${opts.fineTuneEpochs}`, total: steps });
      let lossSum = 0;
      let correct = 0;
      try {
        for (let s = 0; s < steps; s++) {
          const idx = order.slice(s * opts.batchSize, (s + 1) * opts.batchSize);
          const xb = views.gather(idx);
          const yb = Int32Array.from(idx.map((k) => data.trainLabels[k]));
          setLearningRate(optimizer, learningRateAt(opts.fineTuneSchedule, opts.fineTuneLr, e * steps + s, opts.fineTuneEpochs * steps));
          const xt = tf.tensor4d(xb, [idx.length, ...bShape] as [number, number, number, number]);
          const yt = tf.tensor1d(yb, 'int32');
          let r: { loss: number; correct: number };
          try {
            gemmThreads();
            r = await tail.trainStep(xt, yt, optimizer);
          } finally {
            tf.dispose([xt, yt]);
          }
          lossSum += r.loss * idx.length;
          correct += r.correct;
          await new Promise((resolve) => setImmediate(resolve));
          report({
            type: 'progress',
            stage: 'fine-tune',
            done: s + 1,
            total: steps,
            loss: lossSum / ((s + 1) * opts.batchSize),
            accuracy: correct / Math.min(order.length, (s + 1) * opts.batchSize),
          });
        }
      } finally {
        views.dispose();
      }
      gemmThreads();
      metrics = computeMetrics(
        rows(await tailProbabilities(tail, valBoundary, numClasses), numClasses),
        data.validationLabels,
        data.classes,
      );
      const stop = await state.finishEpoch('fineTune', e, {
        loss: lossSum / order.length,
        accuracy: correct / order.length,
        metrics,
        seconds: seconds(te),
        writeBack: () => tail.writeBack(),
        layers: tailLayers,
        optimizerWeights: () => optimizer.getWeights(),
        optimizerPowers: () => adamPowers(optimizer),
      });
      if (stop) break;
    }
    if (!metrics) {
      // Everything was done before the restart: the final metrics come from the restored weights.
      metrics = computeMetrics(
        rows(await tailProbabilities(tail, valBoundary, numClasses), numClasses),
        data.validationLabels,
        data.classes,
      );
    }
    tail.writeBack();
    if (trainingRows && keep) {
      keep.boundary = await trainingRows;
      trainingRows = undefined;
    }
  } finally {
    disposeWhenSettled(trainingRows);
    // Also on failure: the tail's worker threads would keep the process alive.
    disposeWhenSettled(next);
    await tail.dispose();
    optimizer.dispose();
    if (ctx.tailGemm === 'ort') setOrtGemmThreads(ORT_GEMM_MAX_THREADS);
  }
  // --restore-best: the model gets the phase's best tail back (after the tail's last write-back).
  return state.endPhase('fineTune', metrics);
}

function rows(flat: Float32Array, numClasses: number): number[][] {
  const r: number[][] = [];
  for (let i = 0; i < flat.length; i += numClasses) r.push(Array.from(flat.subarray(i, i + numClasses)));
  return r;
}

/** Float32 input of one tailProbabilities call, at most (a few batches; never the whole split). */
const LOGITS_CALL_BYTES = 32 * 1024 ** 2;

/**
 * Validation probabilities in batches of `batch` rows, the batches spread over the tail's threads,
 * gathered a group of batches at a time so that memory does not grow with the validation split.
 * Each batch's logits depend only on its rows, so the grouping does not change them.
 */
export async function tailProbabilities(
  tail: { threads: number; evaluateLogits(batches: readonly Float32Array[]): Promise<Float32Array[]> },
  block: RowStore,
  numClasses: number,
  batch = 32,
): Promise<Float32Array> {
  const n = block.rows;
  const perCall = Math.max(tail.threads, Math.floor(LOGITS_CALL_BYTES / (batch * block.dim * 4)));
  const out = new Float32Array(n * numClasses);
  for (let g = 0; g < n; g += perCall * batch) {
    const starts: number[] = [];
    for (let s = g; s < Math.min(n, g + perCall * batch); s += batch) starts.push(s);
    const sizes = starts.map((s) => Math.min(batch, n - s));
    const logits = await tail.evaluateLogits(starts.map((s, k) => block.gather(Array.from({ length: sizes[k] }, (_, i) => s + i))));
    for (const [k, s] of starts.entries()) {
      const p = tf.tidy(() => toProbabilities(tf.tensor2d(logits[k], [sizes[k], logits[k].length / sizes[k]]), numClasses).dataSync());
      out.set(p, s * numClasses);
    }
  }
  return out;
}

/**
 * Threads of a phase-2 step. On tfjs' own products the step is split over as many threads as there
 * are frozen-layer workers (one core each). With the products on onnxruntime a step costs ~2.7x less
 * CPU and the split's overhead (copying values and gradients between threads) becomes a large share
 * of it: alpha 1.0 default run, phase 2 took 50.5 CPU-s on one tail thread against 58.3 on two
 * (peak RSS 1.28 vs 1.49 GiB), so the tail gets half the workers' cores and the frozen-layer
 * workers, computing the next epoch's views meanwhile, the rest.
 */
export function tailThreads(workers: number, gemm: EngineName): number {
  return gemm === 'ort' ? Math.max(1, Math.floor(workers / 2)) : Math.max(1, workers);
}
