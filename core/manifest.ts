import { z } from 'zod';
import { formatIssues } from './zod-issues.js';

export const ClassMetricsSchema = z.object({
  label: z.string(),
  precision: z.number(),
  recall: z.number(),
  support: z.number().int(),
});

export const MetricsSchema = z.object({
  valAccuracy: z.number(),
  valLoss: z.number(),
  perClass: z.array(ClassMetricsSchema),
  /** confusion[i][j]: true class i predicted as class j, in `classes` order. */
  confusion: z.array(z.array(z.number().int())),
  /** ROC AUC, binary models only. */
  auc: z.number().optional(),
});
export type Metrics = z.infer<typeof MetricsSchema>;

export const EpochSchema = z.object({
  phase: z.enum(['frozen', 'fineTune']),
  epoch: z.number().int(),
  loss: z.number(),
  accuracy: z.number(),
  valLoss: z.number(),
  valAccuracy: z.number(),
  seconds: z.number(),
});
export type EpochRecord = z.infer<typeof EpochSchema>;

/** How a phase chose the weights it kept: on validation loss, with --restore-best and/or --patience. */
export const PhaseSelectionSchema = z.object({
  monitor: z.literal('valLoss'),
  restoreBest: z.boolean(),
  patience: z.number().int().optional(),
  /** Epoch numbers as in `history` (epochs of the run done). */
  bestEpoch: z.number().int(),
  bestValLoss: z.number(),
  lastEpoch: z.number().int(),
  /** The epoch whose weights the model holds. */
  keptEpoch: z.number().int(),
  /** Epochs since the best one, at the last epoch (the patience counter). */
  sinceBest: z.number().int(),
  stoppedEarly: z.boolean(),
  reason: z.string(),
});
export type PhaseSelection = z.infer<typeof PhaseSelectionSchema>;
const ReliabilityBinSchema = z.object({
  lo: z.number(),
  hi: z.number(),
  count: z.number().int(),
  confidence: z.number(),
  accuracy: z.number(),
});

/** Temperature scaling of the logits (training/calibration.ts): served probabilities are softmax(z / T). */
export const CalibrationSchema = z.object({
  temperature: z.number().positive(),
  /** Which scores T was fitted on (the validation split; never a test split). */
  fittedOn: z.string(),
  bins: z.number().int().positive(),
  eceBefore: z.number(),
  eceAfter: z.number(),
  nllBefore: z.number(),
  nllAfter: z.number(),
  reliabilityBefore: z.array(ReliabilityBinSchema),
  reliabilityAfter: z.array(ReliabilityBinSchema),
});
export type Calibration = z.infer<typeof CalibrationSchema>;

/**
 * "None of the classes" (training/open-set.ts, core/open-set-score.ts): the Mahalanobis distance under a
 * shared shrunk low-rank covariance, or (models trained before it) the cosine distance, to the nearest class mean.
 */
export const OpenSetSchema = z.object({
  metric: z.enum(['cosine-nearest-class-mean', 'mahalanobis-shared-lowrank']),
  /** The layer whose output is the embedding (the pooled features). */
  layer: z.string(),
  dim: z.number().int().positive(),
  /** base64 float32 [classes x dim] in class order, from the training images after training, un-augmented. */
  means: z.string(),
  meansFrom: z.string(),
  /** Mahalanobis only: base64 float32 [rank x dim] eigenvectors of the shared covariance, their shrunk variances, the rest's variance. */
  rank: z.number().int().positive().optional(),
  basis: z.string().optional(),
  variances: z.string().optional(),
  residual: z.number().positive().optional(),
  shrinkage: z.number().min(0).max(1).optional(),
  /** Share of in-class held-out photos the threshold is chosen to accept. */
  target: z.number(),
  /** A photo whose distance is above this is `unknown`. */
  threshold: z.number(),
  /** 95% bootstrap interval of the threshold. */
  interval: z.tuple([z.number(), z.number()]),
  bootstrap: z.number().int(),
  n: z.number().int(),
  accepted: z.number(),
  fittedOn: z.string(),
});
export type OpenSet = z.infer<typeof OpenSetSchema>;

export const WeightFileSchema = z.object({
  path: z.string(),
  bytes: z.number().int(),
  sha256: z.string().regex(/^[0-9a-f]{64}$/),
});

const SplitSideSchema = z.enum(['train', 'validation', 'test']);

/** Class balance and exact duplicates of the listed files, before any decode (training/data-report.ts). */
export const DataReportSchema = z.object({
  /** Listed files per class and side of the split. */
  perClass: z.record(z.string(), z.object({ train: z.number().int(), validation: z.number().int(), test: z.number().int() })),
  smallest: z.object({ class: z.string(), count: z.number().int() }),
  largest: z.object({ class: z.string(), count: z.number().int() }),
  /** largest / smallest. */
  imbalance: z.number(),
  duplicates: z.object({
    /** Sets of two or more files with the same content hash, and the files in them. */
    groups: z.number().int(),
    files: z.number().int(),
    /** Sets whose files carry different labels. */
    crossClass: z.number().int(),
    /** Sets with files on different sides of the split (validation or test leaking into training). */
    crossSplit: z.number().int(),
    /** The first sets (cross-class and cross-split first), a few files each. */
    examples: z.array(
      z.object({
        sha256: z.string(),
        /** Files in the set (the list below may be cut short). */
        count: z.number().int(),
        files: z.array(z.object({ file: z.string(), class: z.string(), split: SplitSideSchema })),
      }),
    ),
  }),
  /** Files that could not be read to hash them. */
  unhashed: z.number().int(),
  /** Label manifest runs: its file name, and images in the folder it does not list. */
  labels: z.object({ file: z.string(), unlisted: z.number().int(), unlistedExamples: z.array(z.string()) }).optional(),
  warnings: z.array(z.string()),
});
export type DataReport = z.infer<typeof DataReportSchema>;
/** One published export format of a version (`publish --formats`): its files in the version folder, checked by sha256. */
export const PublishedFormatSchema = z.object({
  /** A format id of core/export/formats.ts (a string here, so a newer id never makes an old reader refuse the manifest). */
  id: z.string(),
  /** The model file a runtime opens, relative to the version folder. */
  file: z.string(),
  /** All of the format's files (bytes summed), e.g. model.json + weights.bin, model.tflite + labels.txt. */
  bytes: z.number().int(),
  /** sha256 of `file`. */
  sha256: z.string().regex(/^[0-9a-f]{64}$/),
  files: z.array(WeightFileSchema),
  runtime: z.string(),
  weights: z.enum(['float32', 'float16', 'int8', 'uint8']).optional(),
  /** Measured at export (exports.json) against the float32 tfjs model. */
  maxAbsDiff: z.number().optional(),
  top1Agreement: z.number().optional(),
  accuracy: z.number().optional(),
  referenceAccuracy: z.number().optional(),
  /** What the figures were measured on. */
  measuredOn: z.string().optional(),
});
export type PublishedFormat = z.infer<typeof PublishedFormatSchema>;

/** verification.json photos a server runs at load to check onnxruntime (serving.onnx's record, or a conversion at load). */
export const SERVING_CHECK_IMAGES = 2;

/**
 * The serving artifact (core/serving-onnx.ts): the fused inference graph of exactly the weights the
 * version serves (published versions: the quantized weights as tfjs dequantizes them), as ONNX, so
 * onnxruntime serves without tfjs. Absent in folders and versions made before it (converted at load).
 */
export const ServingSchema = z.object({
  onnx: z.object({
    /** Relative to the version folder (serving.onnx). */
    file: z.string().min(1),
    bytes: z.number().int().positive(),
    sha256: z.string().regex(/^[0-9a-f]{64}$/),
    /** Graph outputs in order: the model's output, then the logits and pooled embedding when the head has them. */
    outputs: z.array(z.string().min(1)).min(1),
    /** One image: [height, width, 3], NHWC RGB 0..255. */
    inputShape: z.tuple([z.number().int().positive(), z.number().int().positive(), z.literal(3)]),
    /** The weights the graph was written from. */
    weights: z.enum(['float32', 'float16', 'uint8']),
  }),
  /** What onnxruntime must reproduce at load: tfjs' class probabilities of the first `images` verification.json images, on these weights. */
  check: z.object({
    images: z.number().int().positive(),
    probabilities: z.array(z.array(z.number())).min(1),
  }),
});
export type Serving = z.infer<typeof ServingSchema>;

export const ManifestSchema = z.object({
  schemaVersion: z.literal(1),
  name: z.string().min(1),
  /** Sortable: UTC timestamp plus a short content hash, e.g. 20261127T201500Z-3fa2c1d0. */
  version: z.string().min(1),
  createdAt: z.string(),
  /** Labels in output order. Two classes: one logit, sigmoid gives P(classes[1]). */
  classes: z.array(z.string()).min(2),
  output: z.enum(['sigmoid', 'softmax']),
  input: z.object({
    size: z.number().int().min(32),
    channels: z.literal(3),
    resize: z.enum(['stretch', 'crop']),
  }),
  /** x * scale + offset, applied by the model's own Rescaling layer on 0..255 RGB input. */
  preprocessing: z.object({ scale: z.number(), offset: z.number(), inModel: z.literal(true) }),
  backbone: z.object({
    arch: z.literal('mobilenet_v2'),
    alpha: z.number(),
    weights: z.object({ source: z.string(), kind: z.string(), sha256: z.string().optional(), warning: z.string().optional() }),
    fineTuneAt: z.number().int(),
  }),
  hyperparameters: z.record(z.string(), z.unknown()),
  dataset: z.object({
    source: z.string(),
    fingerprint: z.string(),
    counts: z.object({
      train: z.number().int(),
      validation: z.number().int(),
      /** Images of the untouched test split (--test-split), if there is one. */
      test: z.number().int().optional(),
      perClass: z.record(z.string(), z.number().int()),
    }),
    skipped: z.array(z.object({ file: z.string(), reason: z.string() })),
    /** The validation images used, by path relative to the dataset, in evaluation order (trace errors to files). */
    validationFiles: z.array(z.string()).optional(),
    /** Class balance and duplicates, measured before training. */
    report: DataReportSchema.optional(),
  }),
  history: z.array(EpochSchema),
  metrics: z.object({
    frozen: MetricsSchema,
    fineTuned: MetricsSchema.optional(),
    /**
     * The final model on the test split (--test-split; `valAccuracy`/`valLoss` are its accuracy and
     * loss there): selection-free, nothing was chosen on these images.
     */
    test: MetricsSchema.optional(),
  }),
  /** Per phase: which epoch's weights were kept and why (--restore-best, --patience). */
  selection: z.object({ frozen: PhaseSelectionSchema.optional(), fineTune: PhaseSelectionSchema.optional() }).optional(),
  /** Loss weight per class name (--class-weight), when not all 1. */
  classWeights: z.record(z.string(), z.number()).optional(),
  timings: z.record(z.string(), z.number()),
  backend: z.string(),
  /** What computed the frozen layers, on which CPU: a run is bit-for-bit reproducible for the same engine, threads and ISA. */
  engine: z
    .object({
      frozenLayers: z.string(),
      /** What ran the fine-tune tail: tfjs, with its 1x1 products on onnxruntime or not. */
      tail: z.string().optional(),
      cpu: z.object({ model: z.string(), arch: z.string(), cores: z.number().int(), isa: z.array(z.string()) }),
    })
    .optional(),
  /** Weight files with their checksums: verified on publish and on load. */
  files: z.array(WeightFileSchema),
  /** Optional (models trained before it serve uncalibrated). */
  calibration: CalibrationSchema.optional(),
  /** Optional (models trained before it never answer `unknown`). */
  openSet: OpenSetSchema.optional(),
  /** Filled in by publishing when weights are quantized. */
  quantization: z
    .object({
      dtype: z.enum(['none', 'float16', 'uint8']),
      weightBytes: z.number().int(),
      unquantizedWeightBytes: z.number().int(),
      valAccuracy: z.number(),
      unquantizedValAccuracy: z.number(),
      /** "validation set" or "N verification samples". */
      measuredOn: z.string().optional(),
    })
    .optional(),
  /** Filled in by publishing: every format uploaded with the version (absent in versions published before formats were). */
  formats: z.array(PublishedFormatSchema).optional(),
  /** The ahead-of-time ONNX graph onnxruntime serves (training and publishing write it). */
  serving: ServingSchema.optional(),
});
export type Manifest = z.infer<typeof ManifestSchema>;

/**
 * `verification.json` beside the model: a few validation inputs (uint8 RGB at the input size)
 * and the probabilities the trained model gave them, so a published copy can prove it
 * reproduces the training run.
 */
export const VerificationSchema = z.object({
  shape: z.tuple([z.number().int(), z.number().int(), z.number().int(), z.literal(3)]),
  /** base64 of the uint8 pixels, NHWC. */
  pixels: z.string(),
  labels: z.array(z.number().int()),
  probabilities: z.array(z.array(z.number())),
});
export type Verification = z.infer<typeof VerificationSchema>;

/** What `GET /v1/model` exposes: no file lists, no dataset paths. */
export function publicManifest(m: Manifest) {
  return {
    name: m.name,
    version: m.version,
    classes: m.classes,
    inputSize: m.input.size,
    inputResize: m.input.resize,
    metrics: m.metrics,
    trainedAt: m.createdAt,
    backbone: { arch: m.backbone.arch, alpha: m.backbone.alpha },
    ...(m.calibration
      ? {
          calibration: {
            temperature: m.calibration.temperature,
            eceBefore: m.calibration.eceBefore,
            eceAfter: m.calibration.eceAfter,
            fittedOn: m.calibration.fittedOn,
          },
        }
      : {}),
    ...(m.openSet
      ? {
          openSet: { threshold: m.openSet.threshold, interval: m.openSet.interval, target: m.openSet.target, fittedOn: m.openSet.fittedOn },
        }
      : {}),
  };
}

export function parseManifest(json: unknown): Manifest {
  const r = ManifestSchema.safeParse(json);
  if (!r.success) throw new Error(`invalid manifest.json: ${formatIssues(r.error)}`);
  return r.data;
}
