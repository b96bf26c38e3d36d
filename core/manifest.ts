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

/** "None of the classes" (training/open-set.ts, core/open-set-score.ts): cosine distance to the nearest class mean. */
export const OpenSetSchema = z.object({
  metric: z.literal('cosine-nearest-class-mean'),
  /** The layer whose output is the embedding (the pooled features). */
  layer: z.string(),
  dim: z.number().int().positive(),
  /** base64 float32 [classes x dim], unit rows in class order: the training images after training, un-augmented. */
  means: z.string(),
  meansFrom: z.string(),
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
      perClass: z.record(z.string(), z.number().int()),
    }),
    skipped: z.array(z.object({ file: z.string(), reason: z.string() })),
  }),
  history: z.array(EpochSchema),
  metrics: z.object({ frozen: MetricsSchema, fineTuned: MetricsSchema.optional() }),
  timings: z.record(z.string(), z.number()),
  backend: z.string(),
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
