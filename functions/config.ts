import { z } from 'zod';
import { formatIssues } from '../core/zod-issues.js';

export const MIB = 1024 * 1024;
export const DEFAULT_MAX_INPUT_PIXELS = 4096 * 4096;
export const DEFAULT_MAX_REQUEST_PIXELS = 4 * DEFAULT_MAX_INPUT_PIXELS;
/**
 * Lambda (API Gateway, function URLs) takes at most 6 MB of invocation payload and a binary body
 * arrives base64-encoded in it: 4/3 larger, next to the headers and the event's JSON.
 */
export const LAMBDA_MAX_BODY_BYTES = Math.floor(((6_000_000 - 64 * 1024) * 3) / 4);
/** Lambda@Edge origin-request triggers see at most 1 MB of the body (then `inputTruncated`). */
export const EDGE_MAX_BODY_BYTES = 1_000_000;

const EnvSchema = z.object({
  MODEL_URI: z.string().min(1).optional(),
  MODEL_REFRESH_SECONDS: z.coerce.number().min(0).default(60),
  MAX_BODY_BYTES: z.coerce
    .number()
    .int()
    .positive()
    .default(8 * MIB),
  /** Per image; a 224-pixel classifier gains nothing from more than ~16 MP (4096x4096). */
  MAX_INPUT_PIXELS: z.coerce.number().int().positive().default(DEFAULT_MAX_INPUT_PIXELS),
  /** Per request: the sum over a batch of each image's decode cost (see core/image-format.ts). */
  MAX_REQUEST_PIXELS: z.coerce.number().int().positive().default(DEFAULT_MAX_REQUEST_PIXELS),
  MAX_BATCH: z.coerce.number().int().min(1).max(64).default(16),
  /** Comma-separated bearer tokens; empty means no authentication. */
  API_KEYS: z.string().optional(),
  /** A file holding the keys (same formats as the secret), re-read every API_KEYS_TTL_SECONDS. */
  API_KEYS_FILE: z.string().optional(),
  /** How long keys from the secret or the file are cached before they are fetched again. */
  API_KEYS_TTL_SECONDS: z.coerce.number().min(0).default(300),
  /** AWS Secrets Manager ARN holding the keys (JSON array, {"keys": [...]}, or comma-separated). */
  API_KEYS_SECRET_ARN: z.string().optional(),
  /** Comma-separated allowed origins, `*` for any, empty/`none` to send no CORS headers. */
  CORS_ORIGINS: z.string().default('*'),
  LOG_LEVEL: z.enum(['info', 'silent']).default('info'),
});

const list = (s?: string) =>
  (s ?? '')
    .split(',')
    .map((x) => x.trim())
    .filter(Boolean);

/** The serving configuration read from the environment; ServeConfig is its output type. */
const ServeConfigSchema = EnvSchema.transform((e) => {
  const cors = list(e.CORS_ORIGINS);
  return {
    modelUri: e.MODEL_URI,
    refreshSeconds: e.MODEL_REFRESH_SECONDS,
    maxBodyBytes: e.MAX_BODY_BYTES,
    maxInputPixels: e.MAX_INPUT_PIXELS,
    maxRequestPixels: e.MAX_REQUEST_PIXELS,
    maxBatch: e.MAX_BATCH,
    apiKeys: list(e.API_KEYS),
    apiKeysSecretArn: e.API_KEYS_SECRET_ARN,
    apiKeysFile: e.API_KEYS_FILE,
    apiKeysTtlSeconds: e.API_KEYS_TTL_SECONDS,
    corsOrigins: cors.length === 1 && cors[0] === 'none' ? [] : cors,
    logLevel: e.LOG_LEVEL,
  };
});

export type ServeConfig = z.output<typeof ServeConfigSchema>;

export class ConfigError extends Error {}

/** Reads the serving configuration from environment variables (validated; a bad value fails fast). */
export function configFromEnv(
  env: Record<string, string | undefined> = process.env,
  overrides: Partial<ServeConfig> = {},
  defaults: { maxBodyBytes?: number } = {},
): ServeConfig {
  const given = Object.fromEntries(Object.entries(env).filter(([, v]) => v !== undefined && v !== ''));
  if (defaults.maxBodyBytes !== undefined && given.MAX_BODY_BYTES === undefined) given.MAX_BODY_BYTES = String(defaults.maxBodyBytes);
  const r = ServeConfigSchema.safeParse(given);
  if (!r.success) {
    throw new ConfigError(`invalid serving configuration: ${formatIssues(r.error)}`);
  }
  return {
    ...r.data,
    ...overrides,
  };
}
