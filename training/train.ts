import { describeBackend, initBackend } from '../core/backend.js';
import type { Manifest, Metrics } from '../core/manifest.js';
import type { LayersModel } from '../core/tf.js';
import { sha256 } from '../core/versioning.js';
import { CacheBudget, defaultCacheBudget, formatMiB, type RunCache } from './cache-budget.js';
import { imbalanceWarning, resolveClassWeights } from './class-weights.js';
import type { DecodedImage, Split } from './dataset.js';
import { exportModel, predictProbabilities, VERIFICATION_IMAGES } from './export.js';
import { type FeatureExtractor, InProcessExtractor } from './features.js';
import type { ImageSet } from './image-set.js';
import { draftManifest, type ForwardStats, hyperparameters } from './manifest-draft.js';
import { computeMetrics } from './metrics.js';
import { augmentConfig, type TrainOptions } from './options.js';
import { postTraining, type ReviewData, writeReview } from './post-training.js';
import type { Reporter } from './progress.js';
import { EpochPlan, RunState } from './run-state.js';
import { SpillArea } from './spill.js';
import { boundaryLayerName } from './tail/base-layers.js';
import { chooseTailGemm } from './tail/tail-gemm.js';
import { TimedExtractor } from './timed-extractor.js';
import { loadData } from './train-data.js';
import { buildModel } from './train-model.js';
import { type PhaseContext, runFineTunePhase, runFrozenPhase, type TrainingRows, validationFeatures } from './train-phases.js';

export interface TrainResult {
  manifest: Manifest;
  outDir: string;
  model: LayersModel;
  /** The decoded validation images (in memory or in the run's spill folder until `close`). */
  validation: ImageSet;
  /** Up to CALIBRATION_IMAGES training images, un-augmented (int8 export ranges; never the validation split). */
  calibration: DecodedImage[];
  /** Frees the validation images and removes the run's spill folder. */
  close(): void;
  /** Misclassified validation photos, highest-loss training photos, near-duplicates (also `review.json`). */
  review: ReviewData;
  /** Local folder the review's paths are relative to (an s3:// dataset's synced copy). */
  dataDir: string;
}

export const CALIBRATION_IMAGES = 300;

const seconds = (t0: number) => (performance.now() - t0) / 1000;
/** CPU seconds of this process, all threads (the frozen-layer and tail workers are threads of it). */
export const cpuSeconds = (since = 0) => {
  const u = process.cpuUsage();
  return (u.user + u.system) / 1e6 - since;
};

/**
 * The two-phase recipe on cached activations: the frozen layers run once per (image, view) in
 * inference mode; phase 1 trains the head on pooled features, phase 2 the tail above the freeze
 * boundary, BatchNorm always in inference mode. A checkpoint (--checkpoint) resumes the run.
 */
export async function train(
  opts: TrainOptions,
  report: Reporter,
  extractorFactory?: (model: LayersModel, alpha: number) => Promise<FeatureExtractor>,
  /** Default: opts.cacheBudget (else defaultCacheBudget()) and a spill folder in opts.cacheDir. */
  runCache?: RunCache,
  /** A split given by the caller (`edgetune cv`'s folds) instead of the seeded one. */
  split?: Split,
): Promise<TrainResult> {
  const t0 = performance.now();
  const cpu0 = cpuSeconds();
  const backend = await initBackend(undefined, (l) => report({ type: 'info', message: l }));
  const cache: RunCache = runCache ?? {
    budget: new CacheBudget(opts.cacheBudget ?? defaultCacheBudget()),
    spill: new SpillArea(opts.cacheDir),
  };
  let keepValidation = false;
  try {
    return await trainCached(
      opts,
      report,
      cache,
      extractorFactory,
      { wall: t0, cpu: cpu0 },
      backend,
      () => {
        keepValidation = true;
      },
      split,
    );
  } finally {
    if (!keepValidation) cache.spill.remove();
  }
}

async function trainCached(
  opts: TrainOptions,
  report: Reporter,
  cache: RunCache,
  extractorFactory: ((model: LayersModel, alpha: number) => Promise<FeatureExtractor>) | undefined,
  start: { wall: number; cpu: number },
  backend: Awaited<ReturnType<typeof initBackend>>,
  handOver: () => void,
  split: Split | undefined,
): Promise<TrainResult> {
  let c = cpuSeconds();
  const data = await loadData(opts, report, cache, split);
  const dataCpuSeconds = cpuSeconds(c);
  const trainCounts = data.classes.map((_, k) => data.trainLabels.filter((y) => y === k).length);
  const classWeights = resolveClassWeights(opts.classWeight, data.classes, trainCounts);
  const imbalance = imbalanceWarning(data.classes, trainCounts, opts.classWeight);
  if (imbalance) report({ type: 'warning', message: imbalance });
  let t = performance.now();
  const { model, base } = await buildModel(opts, data.classes.length, report);
  // Wall seconds per phase, and CPU seconds over all threads (a loaded machine inflates the first, much less the second).
  const timings: Record<string, number> = { decodeSeconds: data.decodeSeconds, loadSeconds: seconds(t), dataCpuSeconds };

  const runKey = sha256(JSON.stringify({ h: hyperparameters(opts), data: data.fingerprint, base: base.sha256 }));
  const state = await RunState.open(new EpochPlan(opts.epochs, opts.fineTuneEpochs), model, report, opts.checkpoint, runKey, {
    restoreBest: opts.restoreBest,
    patience: opts.patience,
  });

  const forward: ForwardStats = { boundary: { views: 0, seconds: 0 }, pooled: { views: 0, seconds: 0 } };
  const extractor = new TimedExtractor(
    extractorFactory ? await extractorFactory(model, base.alpha) : new InProcessExtractor(model),
    forward,
  );
  const tailGemm = opts.fineTuneEpochs > 0 ? await chooseTailGemm() : undefined;
  const ctx: PhaseContext = {
    opts,
    report,
    data,
    model,
    state,
    extractor,
    aug: augmentConfig(opts),
    boundary: boundaryLayerName(opts.fineTuneAt),
    cache,
    classWeights,
    ...(tailGemm ? { tailGemm: tailGemm.gemm } : {}),
  };
  let val: Awaited<ReturnType<typeof validationFeatures>> | undefined;
  const trainingRows: TrainingRows = {};
  try {
    t = performance.now();
    c = cpuSeconds();
    val = await validationFeatures(ctx);
    const frozen = await runFrozenPhase(ctx, val, trainingRows);
    timings.frozenSeconds = seconds(t);
    timings.frozenCpuSeconds = cpuSeconds(c);
    let fineTuned: Metrics | undefined;
    if (opts.fineTuneEpochs > 0) {
      t = performance.now();
      c = cpuSeconds();
      fineTuned = await runFineTunePhase(ctx, val, trainingRows);
      timings.fineTuneSeconds = seconds(t);
      timings.fineTuneCpuSeconds = cpuSeconds(c);
    }
    let test: Metrics | undefined;
    if (data.test.length) {
      // The exported model itself on images nothing was chosen on.
      t = performance.now();
      const probabilities: number[][] = [];
      for (let s = 0; s < data.test.length; s += 64) {
        probabilities.push(...(await predictProbabilities(model, await data.test.read(s, s + 64), data.classes.length)));
      }
      test = computeMetrics(probabilities, data.testLabels, data.classes);
      timings.testSeconds = seconds(t);
    }
    t = performance.now();
    c = cpuSeconds();
    const post = await postTraining(ctx, val, trainingRows);
    timings.postTrainingSeconds = seconds(t);
    timings.postTrainingCpuSeconds = cpuSeconds(c);
    trainingRows.boundary?.dispose();

    // exportModel adds its own time to the timings.
    const draft = draftManifest({
      opts,
      data,
      base,
      history: state.history,
      metrics: { frozen, fineTuned, test },
      selection: state.selection(),
      classWeights,
      timings: { ...timings, totalSeconds: seconds(start.wall), totalCpuSeconds: cpuSeconds(start.cpu) },
      forward,
      backend: describeBackend(backend),
      frozenLayers: extractor.description,
      ...(tailGemm ? { tail: tailGemm.description } : {}),
    });
    draft.calibration = post.calibration;
    draft.openSet = post.openSet;
    const verify = await data.validation.read(0, VERIFICATION_IMAGES);
    const manifest = await exportModel(opts.out, model, draft, { images: verify, labels: Array.from(data.validationLabels) });
    await writeReview(opts.out, post.review);
    const calibration = await data.train.read(0, CALIBRATION_IMAGES);
    report({ type: 'info', message: cacheSummary(cache) });
    handOver();
    return {
      manifest,
      outDir: opts.out,
      model,
      review: post.review,
      dataDir: data.dir,
      validation: data.validation,
      calibration,
      close() {
        data.validation.dispose();
        cache.spill.remove();
      },
    };
  } finally {
    val?.boundary?.dispose();
    trainingRows.boundary?.dispose();
    data.train.dispose();
    data.test.dispose();
    state.dispose();
    await extractor.close();
  }
}

function cacheSummary({ budget, spill }: RunCache): string {
  const disk = spill.peak ? `, ${formatMiB(spill.peak)} at most on disk (${formatMiB(spill.totalWritten)} written)` : ', nothing on disk';
  return `cache: ${formatMiB(budget.peak)} at most in memory of the ${formatMiB(budget.total)} budget${disk}`;
}
