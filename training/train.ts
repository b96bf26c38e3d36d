import path from 'node:path';
import { describeBackend, initBackend } from '../core/backend.js';
import { buildClassifier, HEAD, PREPROCESS } from '../core/classifier.js';
import type { RgbImage } from '../core/image.js';
import type { EpochRecord, Manifest, Metrics } from '../core/manifest.js';
import type { LayersModel } from '../core/tf.js';
import { tf } from '../core/tf.js';
import { sha256 } from '../core/versioning.js';
import { applyBaseWeights, readBaseWeights, resolveBaseWeights } from '../core/weights/index.js';
import type { AugmentDraw } from './augment.js';
import { loadCheckpoint, type NamedTensor, restoreWeights, saveCheckpoint, trainableWeights } from './checkpoint.js';
import { type DecodedImage, datasetFingerprint, decodeFiles, epochOrder, listDataset, splitDataset } from './dataset.js';
import { exportModel } from './export.js';
import { boundaryLayerName } from './fast/base-layers.js';
import { type FeatureBlock, type FeatureExtractor, float32Rows, gatherRows, InProcessExtractor, LayerExtractor } from './features.js';
import { HeadTrainer, toProbabilities } from './head.js';
import { computeMetrics } from './metrics.js';
import { augmentConfig, type TrainOptions } from './options.js';
import type { Reporter } from './progress.js';
import { deriveSeed } from './rng.js';
import { learningRateAt } from './schedule.js';
import { epochDraws } from './views.js';

export interface TrainResult {
  manifest: Manifest;
  outDir: string;
  model: LayersModel;
  validation: DecodedImage[];
}

const seconds = (t0: number) => (performance.now() - t0) / 1000;

function rowsOf(labels: readonly DecodedImage[]): Int32Array {
  return Int32Array.from(labels.map((i) => i.file.label));
}

/**
 * The two-phase recipe on cached activations: the frozen layers run once per (image, view) in
 * inference mode; phase 1 trains the head on pooled features, phase 2 the tail above the freeze
 * boundary, BatchNorm always in inference mode.
 */
export async function train(
  opts: TrainOptions,
  report: Reporter,
  extractorFactory?: (model: LayersModel, alpha: number) => Promise<FeatureExtractor>,
): Promise<TrainResult> {
  const t0 = performance.now();
  const timings: Record<string, number> = {};
  const backend = await initBackend(undefined, (l) => report({ type: 'info', message: l }));

  // Data
  let t = performance.now();
  const dataDir = opts.data.startsWith('s3://')
    ? await (await import('./dataset-s3.js')).syncDataset(opts.data, { log: (m: string) => report({ type: 'info', message: m }) })
    : opts.data;
  const listing = await listDataset(dataDir);
  const split = splitDataset(listing, { validationSplit: opts.validationSplit, seed: opts.seed, stratified: opts.stratified });
  report({ type: 'stage', stage: `decoding ${listing.files.length} images`, total: listing.files.length });
  const all = [...split.train, ...split.validation];
  const decoded = await decodeFiles(all, {
    size: opts.imageSize,
    resize: opts.resize,
    onProgress: (done, total) => report({ type: 'progress', stage: 'decode', done, total }),
  });
  for (const s of decoded.skipped) report({ type: 'warning', message: `skipped ${s.file}: ${s.reason}` });
  const valSet = new Set(split.validation.map((f) => f.relPath));
  const trainImgs = decoded.images.filter((i) => !valSet.has(i.file.relPath));
  const valImgs = decoded.images.filter((i) => valSet.has(i.file.relPath));
  if (!trainImgs.length || !valImgs.length) throw new Error('no decodable images left on one side of the split');
  const classes = listing.classes;
  const numClasses = classes.length;
  timings.decodeSeconds = seconds(t);
  report({
    type: 'info',
    message: `dataset: ${classes.length} classes (${classes.join(', ')}), ${trainImgs.length} training and ${valImgs.length} validation images, ${decoded.skipped.length} skipped`,
  });

  // Model and pretrained base
  t = performance.now();
  const info = (message: string) => message.trim() && report({ type: 'info', message });
  const resolved = await resolveBaseWeights({ baseWeights: opts.baseWeights, alpha: opts.alpha, inputSize: opts.imageSize, log: info });
  const base = await readBaseWeights(resolved.source, info);
  if (opts.alpha !== undefined && opts.alpha !== base.alpha) {
    throw new Error(`--alpha ${opts.alpha} does not match the weights in ${base.source} (alpha ${base.alpha})`);
  }
  if (base.warning) report({ type: 'warning', message: base.warning });
  const model = buildClassifier({
    alpha: base.alpha,
    inputSize: opts.imageSize,
    numClasses,
    dropout: opts.dropout,
    seed: deriveSeed(opts.seed, 'init:head'),
  });
  base.weights = applyAndRelease(model, base.weights, `the ${base.kind} weights from ${base.source}`);
  report({
    type: 'info',
    message: `base: MobileNetV2 alpha ${base.alpha} at ${opts.imageSize}x${opts.imageSize}, weights ${base.kind} from ${base.source}`,
  });
  timings.loadSeconds = seconds(t);

  const runKey = sha256(JSON.stringify({ h: hyperparameters(opts), data: datasetFingerprint(classes, decoded.hashes), base: base.sha256 }));
  const ckpt = opts.checkpoint ? await loadCheckpoint(opts.checkpoint, runKey) : undefined;
  if (ckpt) {
    restoreWeights(model, ckpt.weights);
    tf.dispose([...ckpt.weights.values()]);
    report({ type: 'info', message: `resuming from the checkpoint in ${opts.checkpoint}: ${ckpt.epochsDone} epoch(s) done` });
  }
  const checkpoint = async (
    phase: 'frozen' | 'fineTune',
    epochsDone: number,
    layers: Set<string>,
    optimizerWeights: () => Promise<NamedTensor[]>,
    frozen?: Metrics,
  ) => {
    if (!opts.checkpoint) return;
    const optimizer = await optimizerWeights();
    await saveCheckpoint(
      opts.checkpoint,
      { runKey, phase, epochsDone, history, frozenMetrics: frozen },
      trainableWeights(model, layers),
      optimizer,
    );
    // getWeights() hands out the optimizer's live accumulators; only the iteration count is a copy.
    tf.dispose(optimizer.filter((o) => o.name === 'iter').map((o) => o.tensor));
  };

  const forward = { boundary: { views: 0, seconds: 0 }, pooled: { views: 0, seconds: 0 } };
  const extractor = new TimedExtractor(
    extractorFactory ? await extractorFactory(model, base.alpha) : new InProcessExtractor(model),
    forward,
  );
  const boundary = boundaryLayerName(opts.fineTuneAt);
  const aug = augmentConfig(opts);
  const trainPaths = trainImgs.map((i) => i.file.relPath);
  const trainLabels = rowsOf(trainImgs);
  const valLabels = rowsOf(valImgs);
  const history: EpochRecord[] = ckpt ? [...ckpt.history] : [];
  const frozenDone = ckpt ? Math.min(ckpt.epochsDone, opts.epochs) : 0;
  const fineDone = ckpt ? Math.max(0, ckpt.epochsDone - opts.epochs) : 0;

  try {
    // Phase 1: frozen base, head only, on pooled features.
    t = performance.now();
    report({ type: 'stage', stage: 'features (validation)', total: valImgs.length });
    // The un-augmented validation images run once for both phases: pooled features and, when
    // phase 2 follows, their boundary activations (and the frozen-layer workers start only once).
    const [valBlock, valBoundary] = await extractor.computeLayers(
      valImgs,
      valImgs.map(() => null),
      opts.fineTuneEpochs > 0 ? [HEAD.pool, boundary] : [HEAD.pool],
      (done) => report({ type: 'progress', stage: 'features', done, total: valImgs.length }),
    );
    const dim = valBlock.shape[0];
    const valPooled = float32Rows(valBlock);
    const head = new HeadTrainer(model, numClasses, opts.lr, opts.dropout, deriveSeed(opts.seed, 'dropout:head'));
    if (ckpt?.phase === 'frozen') await head.restoreOptimizer(ckpt.optimizer);
    if (ckpt?.phase === 'frozen') tf.dispose(ckpt.optimizer.map((o) => o.tensor));
    let frozenMetrics: Metrics | undefined = ckpt?.frozenMetrics;
    // Which set of views epoch e trains on: its own (exact, like an uncached pipeline), one of
    // `frozenViews` sets cycled over the epochs, or the un-augmented images every epoch.
    const viewSet = (e: number) => (!opts.augmentFrozen ? -1 : opts.frozenViews ? e % opts.frozenViews : e);
    const featureSets = new Map<number, Float32Array>();
    for (let e = frozenDone; e < opts.epochs; e++) {
      const te = performance.now();
      const set = viewSet(e);
      let feats = featureSets.get(set);
      if (!feats) {
        const draws = set >= 0 ? epochDraws(trainPaths, aug, opts.seed, set) : trainPaths.map(() => null);
        report({ type: 'stage', stage: `features (epoch ${e + 1})`, total: trainImgs.length });
        feats = float32Rows(
          await extractor.compute(trainImgs, draws, HEAD.pool, (done) =>
            report({ type: 'progress', stage: 'features', done, total: trainImgs.length }),
          ),
        );
        if (set < 0 || opts.frozenViews) featureSets.set(set, feats);
      }
      const { loss, accuracy } = head.trainEpoch(feats, dim, trainLabels, opts.batchSize, opts.seed, e);
      const probs = head.probabilities(valPooled, dim);
      const m = computeMetrics(rows(probs, numClasses), valLabels, classes);
      frozenMetrics = m;
      const rec = {
        phase: 'frozen' as const,
        epoch: e + 1,
        loss,
        accuracy,
        valLoss: m.valLoss,
        valAccuracy: m.valAccuracy,
        seconds: seconds(te),
      };
      history.push(rec);
      head.writeBack();
      await checkpoint('frozen', e + 1, new Set([HEAD.logits]), () => head.optimizerWeights(), m);
      report({ type: 'epoch', ...rec, epochs: opts.epochs });
    }
    if (frozenDone < opts.epochs) head.writeBack();
    head.dispose();
    if (!frozenMetrics) {
      // No head epochs: still evaluate the untrained head so the manifest has figures.
      const h = new HeadTrainer(model, numClasses, opts.lr, opts.dropout);
      frozenMetrics = computeMetrics(rows(h.probabilities(valPooled, dim), numClasses), valLabels, classes);
      h.dispose();
    }
    timings.frozenSeconds = seconds(t);

    // Phase 2: fine-tune the tail above the boundary on cached boundary activations.
    let fineMetrics: Metrics | undefined;
    if (opts.fineTuneEpochs > 0) {
      t = performance.now();
      const bShape = valBoundary.shape;
      // The workers compute epoch e + 1's views while the tail trains on epoch e's.
      const viewsFor = (e: number, onProgress?: (done: number) => void) => {
        const p = extractor.compute(trainImgs, epochDraws(trainPaths, aug, opts.seed, opts.epochs + e), boundary, onProgress);
        p.catch(() => {}); // awaited in its epoch; if training stops first, the pool's shutdown rejects it
        return p;
      };
      report({ type: 'stage', stage: `boundary (epoch ${opts.epochs + fineDone + 1})`, total: trainImgs.length });
      // Started before the tail's worker threads, which take a second or so to come up.
      let next =
        fineDone < opts.fineTuneEpochs
          ? viewsFor(fineDone, (done) => report({ type: 'progress', stage: 'boundary', done, total: trainImgs.length }))
          : undefined;
      const { createTrainingTail } = await import('./fast/parallel-tail.js');
      // The step is split over as many threads as there are frozen-layer workers (one core each).
      const tail = await createTrainingTail(
        model,
        { fineTuneAt: opts.fineTuneAt, numClasses, dropout: opts.dropout, seed: deriveSeed(opts.seed, 'dropout:tail') },
        { threads: Math.max(1, opts.workers) },
      );
      report({ type: 'info', message: `fine-tune step: ${tail.route} tail on ${tail.threads} thread(s)` });
      const optimizer = tf.train.adam(opts.fineTuneLr);
      try {
        if (ckpt?.phase === 'fineTune') {
          await optimizer.setWeights(ckpt.optimizer);
          tf.dispose(ckpt.optimizer.map((o) => o.tensor));
        }
        const tailLayers = new Set(model.layers.slice(model.layers.findIndex((l) => l.name === boundary) + 1).map((l) => l.name));
        for (let e = fineDone; e < opts.fineTuneEpochs; e++) {
          const te = performance.now();
          const globalEpoch = opts.epochs + e;
          const views = await next!;
          next = e + 1 < opts.fineTuneEpochs ? viewsFor(e + 1) : undefined;
          const order = epochOrder(trainImgs.length, opts.seed, globalEpoch);
          const steps = Math.ceil(order.length / opts.batchSize);
          report({ type: 'stage', stage: `fine-tune epoch ${e + 1}/${opts.fineTuneEpochs}`, total: steps });
          let lossSum = 0;
          let correct = 0;
          for (let s = 0; s < steps; s++) {
            const idx = order.slice(s * opts.batchSize, (s + 1) * opts.batchSize);
            const xb = gatherRows(views, idx);
            const yb = Int32Array.from(idx.map((k) => trainLabels[k]));
            // tfjs' Adam reads its learningRate field on every step.
            (optimizer as unknown as { learningRate: number }).learningRate = learningRateAt(
              opts.fineTuneSchedule,
              opts.fineTuneLr,
              e * steps + s,
              opts.fineTuneEpochs * steps,
            );
            const xt = tf.tensor4d(xb, [idx.length, ...bShape] as [number, number, number, number]);
            const yt = tf.tensor1d(yb, 'int32');
            let r: { loss: number; correct: number };
            try {
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
          const probs = await tailProbabilities(tail, valBoundary, numClasses);
          const m = computeMetrics(rows(probs, numClasses), valLabels, classes);
          fineMetrics = m;
          const rec = {
            phase: 'fineTune' as const,
            epoch: globalEpoch + 1,
            loss: lossSum / order.length,
            accuracy: correct / order.length,
            valLoss: m.valLoss,
            valAccuracy: m.valAccuracy,
            seconds: seconds(te),
          };
          history.push(rec);
          tail.writeBack();
          await checkpoint('fineTune', globalEpoch + 1, tailLayers, () => optimizer.getWeights(), frozenMetrics);
          report({ type: 'epoch', ...rec, epochs: opts.epochs + opts.fineTuneEpochs });
        }
        if (fineDone > 0 && fineDone >= opts.fineTuneEpochs) {
          // Everything was done before the restart: the final metrics come from the restored weights.
          fineMetrics = computeMetrics(rows(await tailProbabilities(tail, valBoundary, numClasses), numClasses), valLabels, classes);
        }
        tail.writeBack();
      } finally {
        // Also on failure: the tail's worker threads would keep the process alive.
        await tail.dispose();
        optimizer.dispose();
      }
      timings.fineTuneSeconds = seconds(t);
    }

    // Export (exportModel adds its own time to the timings)
    const name = opts.name ?? path.basename(path.resolve(dataDir.replace(/\/+$/, '')));
    const manifest = await exportModel(
      opts.out,
      model,
      {
        schemaVersion: 1,
        name,
        classes,
        output: numClasses === 2 ? 'sigmoid' : 'softmax',
        input: { size: opts.imageSize, channels: 3, resize: opts.resize },
        preprocessing: { scale: PREPROCESS.scale, offset: PREPROCESS.offset, inModel: true },
        backbone: {
          arch: 'mobilenet_v2',
          alpha: base.alpha,
          weights: { source: base.source, kind: base.kind, sha256: base.sha256, warning: base.warning },
          fineTuneAt: opts.fineTuneAt,
        },
        hyperparameters: hyperparameters(opts),
        dataset: {
          source: opts.data,
          fingerprint: datasetFingerprint(classes, decoded.hashes),
          counts: {
            train: trainImgs.length,
            validation: valImgs.length,
            perClass: Object.fromEntries(classes.map((c, i) => [c, decoded.images.filter((d) => d.file.label === i).length])),
          },
          skipped: decoded.skipped,
        },
        history,
        metrics: { frozen: frozenMetrics, fineTuned: fineMetrics },
        timings: {
          ...timings,
          totalSeconds: seconds(t0),
          ...(forward.boundary.views
            ? { boundaryViews: forward.boundary.views, boundaryImagesPerSecond: forward.boundary.views / forward.boundary.seconds }
            : {}),
          ...(forward.pooled.views
            ? { pooledViews: forward.pooled.views, pooledImagesPerSecond: forward.pooled.views / forward.pooled.seconds }
            : {}),
        },
        backend: describeBackend(backend),
      },
      { images: valImgs, labels: Array.from(valLabels) },
    );
    return { manifest, outDir: opts.out, model, validation: valImgs };
  } finally {
    await extractor.close();
  }
}

/** Sets the base weights on the model and lets the source arrays go (they can be 14 MB+). */
function applyAndRelease(model: LayersModel, weights: Map<string, import('../core/weights/index.js').WeightArray>, label: string) {
  applyBaseWeights(model, weights, label);
  return new Map();
}

/** Counts views and seconds of the frozen forward pass, for the manifest and the benchmark. */
/** Counts views and seconds of the frozen forward pass, for the manifest's timings. */
class TimedExtractor extends LayerExtractor {
  constructor(
    private readonly ex: FeatureExtractor,
    private readonly stats: Record<'boundary' | 'pooled', { views: number; seconds: number }>,
  ) {
    super();
  }

  get description(): string {
    return this.ex.description;
  }

  async computeLayers(
    images: readonly RgbImage[],
    draws: readonly (AugmentDraw | null)[],
    layers: readonly string[],
    onProgress?: (done: number) => void,
  ): Promise<FeatureBlock[]> {
    const t = performance.now();
    const out = await this.ex.computeLayers(images, draws, layers, onProgress);
    // A pass that also pools ran the whole base: it counts as a pooled pass.
    const s = this.stats[layers.includes(HEAD.pool) ? 'pooled' : 'boundary'];
    s.views += images.length;
    s.seconds += seconds(t);
    return out;
  }

  close(): Promise<void> {
    return this.ex.close();
  }
}

function hyperparameters(o: TrainOptions): Record<string, unknown> {
  const { data, out, json, publish, checkpoint, baseWeights, name, export: _formats, ...rest } = o;
  return rest;
}

function rows(flat: Float32Array, numClasses: number): number[][] {
  const r: number[][] = [];
  for (let i = 0; i < flat.length; i += numClasses) r.push(Array.from(flat.subarray(i, i + numClasses)));
  return r;
}

/** Validation probabilities in batches of `batch` rows, the batches spread over the tail's threads. */
async function tailProbabilities(
  tail: { evaluateLogits(batches: readonly Float32Array[]): Promise<Float32Array[]> },
  block: FeatureBlock,
  numClasses: number,
  batch = 32,
): Promise<Float32Array> {
  const n = block.rows;
  const starts: number[] = [];
  for (let s = 0; s < n; s += batch) starts.push(s);
  const sizes = starts.map((s) => Math.min(batch, n - s));
  const logits = await tail.evaluateLogits(
    starts.map((s, k) =>
      gatherRows(
        block,
        Array.from({ length: sizes[k] }, (_, i) => s + i),
      ),
    ),
  );
  const out = new Float32Array(n * numClasses);
  for (const [k, s] of starts.entries()) {
    const p = tf.tidy(() => toProbabilities(tf.tensor2d(logits[k], [sizes[k], logits[k].length / sizes[k]]), numClasses).dataSync());
    out.set(p, s * numClasses);
  }
  return out;
}
