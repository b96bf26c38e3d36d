import { describeBackend, initBackend } from '../core/backend.js';
import type { Manifest, Metrics } from '../core/manifest.js';
import type { LayersModel } from '../core/tf.js';
import { sha256 } from '../core/versioning.js';
import type { DecodedImage } from './dataset.js';
import { exportModel } from './export.js';
import { type FeatureExtractor, InProcessExtractor } from './features.js';
import { draftManifest, type ForwardStats, hyperparameters } from './manifest-draft.js';
import { augmentConfig, type TrainOptions } from './options.js';
import { postTraining, type ReviewData, writeReview } from './post-training.js';
import type { Reporter } from './progress.js';
import { EpochPlan, RunState } from './run-state.js';
import { boundaryLayerName } from './tail/base-layers.js';
import { TimedExtractor } from './timed-extractor.js';
import { loadData } from './train-data.js';
import { buildModel } from './train-model.js';
import { type PhaseContext, runFineTunePhase, runFrozenPhase, validationFeatures } from './train-phases.js';

export interface TrainResult {
  manifest: Manifest;
  outDir: string;
  model: LayersModel;
  validation: DecodedImage[];
  /** Up to CALIBRATION_IMAGES training images, un-augmented (int8 export ranges; never the validation split). */
  calibration: DecodedImage[];
  /** Misclassified validation photos, highest-loss training photos, near-duplicates (also `review.json`). */
  review: ReviewData;
  /** Local folder the review's paths are relative to (an s3:// dataset's synced copy). */
  dataDir: string;
}

export const CALIBRATION_IMAGES = 300;

const seconds = (t0: number) => (performance.now() - t0) / 1000;

/**
 * The two-phase recipe on cached activations: the frozen layers run once per (image, view) in
 * inference mode; phase 1 trains the head on pooled features, phase 2 the tail above the freeze
 * boundary, BatchNorm always in inference mode. A checkpoint (--checkpoint) resumes the run.
 */
export async function train(
  opts: TrainOptions,
  report: Reporter,
  extractorFactory?: (model: LayersModel, alpha: number) => Promise<FeatureExtractor>,
): Promise<TrainResult> {
  const t0 = performance.now();
  const backend = await initBackend(undefined, (l) => report({ type: 'info', message: l }));

  const data = await loadData(opts, report);
  let t = performance.now();
  const { model, base } = await buildModel(opts, data.classes.length, report);
  const timings: Record<string, number> = { decodeSeconds: data.decodeSeconds, loadSeconds: seconds(t) };

  const runKey = sha256(JSON.stringify({ h: hyperparameters(opts), data: data.fingerprint, base: base.sha256 }));
  const state = await RunState.open(new EpochPlan(opts.epochs, opts.fineTuneEpochs), model, report, opts.checkpoint, runKey);

  const forward: ForwardStats = { boundary: { views: 0, seconds: 0 }, pooled: { views: 0, seconds: 0 } };
  const extractor = new TimedExtractor(
    extractorFactory ? await extractorFactory(model, base.alpha) : new InProcessExtractor(model),
    forward,
  );
  const ctx: PhaseContext = {
    opts,
    report,
    data,
    model,
    state,
    extractor,
    aug: augmentConfig(opts),
    boundary: boundaryLayerName(opts.fineTuneAt),
  };
  try {
    t = performance.now();
    const val = await validationFeatures(ctx);
    const frozen = await runFrozenPhase(ctx, val);
    timings.frozenSeconds = seconds(t);
    let fineTuned: Metrics | undefined;
    if (opts.fineTuneEpochs > 0) {
      t = performance.now();
      fineTuned = await runFineTunePhase(ctx, val);
      timings.fineTuneSeconds = seconds(t);
    }
    t = performance.now();
    const post = await postTraining(ctx, val);
    timings.postTrainingSeconds = seconds(t);

    // exportModel adds its own time to the timings.
    const draft = draftManifest({
      opts,
      data,
      base,
      history: state.history,
      metrics: { frozen, fineTuned },
      timings: { ...timings, totalSeconds: seconds(t0) },
      forward,
      backend: describeBackend(backend),
    });
    draft.calibration = post.calibration;
    draft.openSet = post.openSet;
    const manifest = await exportModel(opts.out, model, draft, { images: data.validation, labels: Array.from(data.validationLabels) });
    await writeReview(opts.out, post.review);
    return {
      manifest,
      outDir: opts.out,
      model,
      review: post.review,
      dataDir: data.dir,
      validation: data.validation,
      calibration: data.train.slice(0, CALIBRATION_IMAGES),
    };
  } finally {
    await extractor.close();
  }
}
