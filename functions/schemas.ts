import { z } from '@hono/zod-openapi';
import { MetricsSchema } from '../core/manifest.js';

export const PredictionSchema = z.object({ label: z.string(), score: z.number().min(0).max(1) }).openapi('Prediction');

export const ModelRefSchema = z.object({ name: z.string(), version: z.string() }).openapi('ModelRef');

export const TimingsSchema = z
  .object({ decodeMs: z.number(), inferenceMs: z.number(), totalMs: z.number() })
  .openapi('Timings', { description: 'Server-side milliseconds: image decode + resize, model forward pass, whole request.' });

export const OpenSetResultSchema = z
  .object({
    distance: z.number().openapi({ description: 'Cosine distance of the pooled embedding to the nearest class mean.' }),
    threshold: z.number().openapi({ description: "The model's threshold, or ?threshold=." }),
    unknown: z.boolean(),
  })
  .openapi('OpenSetResult', { description: 'Present when the model was trained with open-set statistics.' });

/** One image's answer (the single route adds model and timings). */
const ImageResultShape = {
  label: z
    .string()
    .nullable()
    .openapi({ example: 'alpaca', description: 'null when the photo looks like none of the classes (reason "unknown").' }),
  score: z.number().openapi({ example: 0.97, description: 'Probability of the best class (listed even when label is null).' }),
  reason: z.literal('unknown').optional().openapi({ description: 'Why label is null.' }),
  predictions: z.array(PredictionSchema).openapi({ description: 'Best first; all classes unless ?top=k.' }),
  calibrated: z
    .boolean()
    .openapi({ description: 'true: probabilities are temperature-scaled (fitted on the validation split at training time).' }),
  openSet: OpenSetResultSchema.optional(),
};

export const ClassifyResultSchema = z
  .object({
    ...ImageResultShape,
    model: ModelRefSchema,
    timings: TimingsSchema,
  })
  .openapi('ClassifyResult');

export const BatchResultSchema = z
  .object({
    results: z.array(z.object(ImageResultShape)),
    model: ModelRefSchema,
    timings: TimingsSchema,
  })
  .openapi('BatchResult');

export const TopQuerySchema = z.object({
  top: z.coerce
    .number()
    .int()
    .min(1)
    .max(1000)
    .optional()
    .openapi({ param: { name: 'top', in: 'query' }, description: 'Return only the k best labels.', example: 1 }),
});

export const ClassifyQuerySchema = TopQuerySchema.extend({
  threshold: z.coerce
    .number()
    .min(0)
    .max(2)
    .optional()
    .openapi({
      param: { name: 'threshold', in: 'query' },
      description: "Open-set distance above which a photo is 'unknown' (0..2; default: the model's own, chosen at training time).",
      example: 0.3,
    }),
});

export const ModelInfoSchema = z
  .object({
    name: z.string(),
    version: z.string(),
    classes: z.array(z.string()),
    inputSize: z.number().int(),
    inputResize: z
      .enum(['stretch', 'crop'])
      .openapi({ description: 'how a photo becomes inputSize x inputSize: stretched, or centre-cropped to square first' }),
    metrics: z.object({ frozen: MetricsSchema, fineTuned: MetricsSchema.optional() }),
    trainedAt: z.string(),
    backbone: z.object({ arch: z.string(), alpha: z.number() }),
    calibration: z.object({ temperature: z.number(), eceBefore: z.number(), eceAfter: z.number(), fittedOn: z.string() }).optional(),
    openSet: z
      .object({ threshold: z.number(), interval: z.tuple([z.number(), z.number()]), target: z.number(), fittedOn: z.string() })
      .optional(),
    loadedAt: z.string(),
  })
  .openapi('ModelInfo');

export const HealthSchema = z.object({ status: z.literal('ok'), uptimeSeconds: z.number() }).openapi('Health');

/** The served model as /v1/ready reports it (functions/model-holder.ts). */
const ServedModelSchema = z.object({
  name: z.string(),
  version: z.string(),
  engine: z.enum(['fused', 'layers']).openapi({ description: 'fused: BatchNorm-folded executor; layers: model.predict' }),
  runtime: z.string().openapi({
    description: "What runs the model, e.g. 'onnxruntime-node 1.23.2 (CPU, 2 intra-op threads), from serving.onnx' or 'tfjs wasm'",
  }),
  loadedAt: z.string(),
  loadMs: z.number(),
  warmupMs: z.number(),
});

const LoadErrorSchema = z.object({ message: z.string(), at: z.string(), during: z.enum(['initial-load', 'refresh']) });

/** What ModelHolder.status() returns. */
export const HolderStatusSchema = z.object({
  state: z.enum(['unconfigured', 'loading', 'ready', 'failed']),
  model: ServedModelSchema.optional(),
  lastCheckAt: z.string().optional(),
  lastError: LoadErrorSchema.optional(),
});
export type HolderStatus = z.infer<typeof HolderStatusSchema>;

export const ReadySchema = z
  .object({
    ready: z.boolean(),
    backend: z.string().optional(),
    model: ServedModelSchema.optional(),
    lastCheckAt: z.string().optional(),
    lastError: LoadErrorSchema.optional(),
    detail: z.string().optional(),
  })
  .openapi('Readiness');

export const IMAGE_MEDIA_TYPES = ['image/jpeg', 'image/png', 'image/webp', 'image/gif', 'image/bmp'] as const;

export const BinaryImageSchema = z.string().openapi({ type: 'string', format: 'binary', description: 'The image file bytes.' });
