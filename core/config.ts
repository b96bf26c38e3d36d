// Every EDGETUNE_* environment variable, validated in one place. Modules read their settings from
// edgetuneConfig() instead of process.env, so a typo'd value fails with the variable's name instead
// of silently falling back to a default.
import { z } from 'zod';
import { formatIssues } from './zod-issues.js';

const flag = z
  .enum(['', '0', '1', 'false', 'true'])
  .optional()
  .transform((v) => v === '1' || v === 'true');
const unset = (v: unknown) => (v === '' ? undefined : v);
const text = z.preprocess(unset, z.string().optional());
const int = (min: number) => z.preprocess(unset, z.coerce.number().int().min(min).optional());
const url = z.preprocess(unset, z.url({ protocol: /^https?$/ }).optional());

export const EnvSchema = z.object({
  /** tfjs backend preference (core/backend.ts). */
  EDGETUNE_BACKEND: z.preprocess(unset, z.enum(['auto', 'node-gpu', 'node', 'wasm', 'cpu']).optional()),
  /** Inference engine of the frozen-layer workers (default auto) and serving on Node (default wasm) (core/engine): wasm, ort (onnxruntime-node), auto. */
  EDGETUNE_ENGINE: z.preprocess(unset, z.enum(['auto', 'wasm', 'ort']).optional()),
  /** onnxruntime intra-op threads when serving on the ort engine (default min(2, cores)). */
  EDGETUNE_ENGINE_THREADS: int(1),
  /** WASM threads; more than 1 starts tfjs' threaded build (core/wasm-threads.ts). */
  EDGETUNE_WASM_THREADS: int(1),
  /** Folder holding the tfjs .wasm binaries (bundles). */
  EDGETUNE_WASM_DIR: text,
  /** Default pretrained MobileNetV2 (core/weights). */
  EDGETUNE_BASE_WEIGHTS: text,
  /** Download cache (core/weights/cache.ts). */
  EDGETUNE_CACHE_DIR: text,
  /** Mirror of the official Keras weights (core/weights/keras-official.ts). */
  EDGETUNE_KERAS_WEIGHTS_URL: url,
  /** Never download base weights. */
  EDGETUNE_OFFLINE: flag,
  /** Print stack traces of CLI errors. */
  EDGETUNE_DEBUG: flag,
  /** '0' serves through tfjs layers instead of the fused inference graph (functions/model-holder.ts). */
  EDGETUNE_FAST_FORWARD: z.preprocess(unset, z.enum(['0', '1']).optional()),
  /** S3 endpoint (s3rver, MinIO); unset: AWS, or the embedded S3 (core/s3). */
  EDGETUNE_S3_ENDPOINT: url,
  /** Credentials of the embedded S3 (per run, printed by `edgetune s3`; core/s3/embedded.ts). */
  EDGETUNE_S3_ACCESS_KEY_ID: text,
  EDGETUNE_S3_SECRET_ACCESS_KEY: text,
  EDGETUNE_S3_DIR: text,
  EDGETUNE_S3_PORT: int(0),
  EDGETUNE_S3_ATTEMPTS: int(1),
  EDGETUNE_S3_BACKOFF_MS: int(0),
  /** `sdk` sends every S3 request through the AWS SDK; default `auto`: GETs with a static key pair skip it (core/s3/signed-get.ts). */
  EDGETUNE_S3_CLIENT: z.preprocess(unset, z.enum(['auto', 'sdk']).optional()),
  /** Extra `edgetune train` flags of the training container (infra/training.ts). */
  EDGETUNE_TRAIN_ARGS: text,
  /** Output folder of the training container (training/Dockerfile). */
  EDGETUNE_OUT: text,
  /** Chromium binary for TensorFlow Lite's interpreter (core/export/tflite/interpreter.ts); default /usr/bin/chromium. */
  EDGETUNE_CHROMIUM: text,
  /** ../shared (weights, photos) for tests and benchmarks. */
  EDGETUNE_SHARED_DIR: text,
  /** Skips the *.slow.test.ts suites (npm run test:fast). */
  EDGETUNE_SKIP_SLOW: text,
});

export type EdgetuneEnv = z.infer<typeof EnvSchema>;

/**
 * The validated EDGETUNE_* settings of `env` (default process.env), read on every call (tests and
 * the embedded S3 change the environment). Throws naming each invalid variable. Other EDGETUNE_*
 * names pass through unchecked (other tools of the project may define their own).
 */
export function edgetuneConfig(env: Record<string, string | undefined> = process.env): EdgetuneEnv {
  const ours = Object.fromEntries(Object.entries(env).filter(([k]) => k.startsWith('EDGETUNE_')));
  const r = EnvSchema.safeParse(ours);
  if (!r.success) throw new Error(`invalid EDGETUNE_* environment: ${formatIssues(r.error)}`);
  return r.data;
}
