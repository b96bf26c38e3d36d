import { PREPROCESS } from '../core/classifier.js';
import { cpuInfo } from '../core/engine/cpu.js';
import { outputActivation } from '../core/head-convention.js';
import type { EpochRecord, Metrics, PhaseSelection } from '../core/manifest.js';
import type { ManifestDraft } from './export.js';
import type { TrainOptions } from './options.js';
import type { TrainData } from './train-data.js';
import type { BaseInfo } from './train-model.js';

/** The options that shape the weights (what the manifest records and the checkpoint's run key hashes). */
export function hyperparameters(o: TrainOptions): Record<string, unknown> {
  // Where the caches live changes nothing in the results: not a hyperparameter (nor part of the run key).
  // The label manifest is covered by the data fingerprint.
  const {
    data,
    out,
    json,
    publish,
    checkpoint,
    baseWeights,
    name,
    export: _formats,
    labels: _labels,
    cacheBudget: _b,
    cacheDir: _d,
    ...rest
  } = o;
  return rest;
}

/** Views and seconds of the frozen forward pass, by kind (see TimedExtractor). */
export type ForwardStats = Record<'boundary' | 'pooled', { views: number; seconds: number }>;

/** The manifest of a finished run, before export adds the files, version and export time. */
export function draftManifest(p: {
  opts: TrainOptions;
  data: TrainData;
  base: BaseInfo;
  history: EpochRecord[];
  metrics: { frozen: Metrics | undefined; fineTuned: Metrics | undefined; test?: Metrics };
  selection?: { frozen?: PhaseSelection; fineTune?: PhaseSelection };
  classWeights?: number[];
  timings: Record<string, number>;
  forward: ForwardStats;
  backend: string;
  /** The frozen-layer extractor's description (its engine and threads). */
  frozenLayers?: string;
  /** What ran the fine-tune tail (training/tail/tail-gemm.ts). */
  tail?: string;
}): ManifestDraft {
  const { opts, data, base, forward } = p;
  const numClasses = data.classes.length;
  return {
    schemaVersion: 1,
    name: data.name,
    classes: data.classes,
    output: outputActivation(numClasses),
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
      fingerprint: data.fingerprint,
      counts: {
        train: data.train.length,
        validation: data.validation.length,
        ...(data.test.length ? { test: data.test.length } : {}),
        perClass: data.perClass,
      },
      skipped: data.skipped,
      validationFiles: data.validationFiles,
      report: data.dataReport,
    },
    history: p.history,
    metrics: { frozen: p.metrics.frozen, fineTuned: p.metrics.fineTuned, ...(p.metrics.test ? { test: p.metrics.test } : {}) },
    ...(p.selection ? { selection: p.selection } : {}),
    ...(p.classWeights ? { classWeights: Object.fromEntries(data.classes.map((c, k) => [c, p.classWeights?.[k] ?? 1])) } : {}),
    timings: {
      ...p.timings,
      ...(forward.boundary.views
        ? { boundaryViews: forward.boundary.views, boundaryImagesPerSecond: forward.boundary.views / forward.boundary.seconds }
        : {}),
      ...(forward.pooled.views
        ? { pooledViews: forward.pooled.views, pooledImagesPerSecond: forward.pooled.views / forward.pooled.seconds }
        : {}),
    },
    backend: p.backend,
    ...(p.frozenLayers ? { engine: { frozenLayers: p.frozenLayers, ...(p.tail ? { tail: p.tail } : {}), cpu: cpuInfo() } } : {}),
  } as ManifestDraft;
}
