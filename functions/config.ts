import { z } from 'zod';
import { formatIssues } from '../core/zod-issues.js';

export const MIB = 1024 * 1024;

const EnvSchema = z.object({
  MODEL_URI: z.string().min(1).optional(),
  MODEL_REFRESH_SECONDS: z.coerce.number().min(0).default(60),
  MAX_BODY_BYTES: z.coerce
    .number()
    .int()
    .positive()
    .default(8 * MIB),
  MAX_INPUT_PIXELS: z.coerce.number().int().positive().default(50_000_000),
  MAX_BATCH: z.coerce.number().int().min(1).max(64).default(16),
  /** Comma-separated bearer tokens; empty means no authentication. */
  API_KEYS: z.string().optional(),
  /** AWS Secrets Manager ARN holding the keys (JSON array, {"keys": [...]}, or comma-separated). */
  API_KEYS_SECRET_ARN: z.string().optional(),
  /** Comma-separated allowed origins, `*` for any, empty/`none` to send no CORS headers. */
  CORS_ORIGINS: z.string().default('*'),
  LOG_LEVEL: z.enum(['info', 'silent']).default('info'),
});

export interface ServeConfig {
  modelUri?: string;
  refreshSeconds: number;
  maxBodyBytes: number;
  maxInputPixels: number;
  maxBatch: number;
  apiKeys: string[];
  apiKeysSecretArn?: string;
  corsOrigins: string[];
  logLevel: 'info' | 'silent';
}

export class ConfigError extends Error {}

/** Reads the serving configuration from environment variables (validated; a bad value fails fast). */
export function configFromEnv(env: Record<string, string | undefined> = process.env, overrides: Partial<ServeConfig> = {}): ServeConfig {
  const r = EnvSchema.safeParse(Object.fromEntries(Object.entries(env).filter(([, v]) => v !== undefined && v !== '')));
  if (!r.success) {
    throw new ConfigError(`invalid serving configuration: ${formatIssues(r.error)}`);
  }
  const e = r.data;
  const list = (s?: string) =>
    (s ?? '')
      .split(',')
      .map((x) => x.trim())
      .filter(Boolean);
  const cors = list(e.CORS_ORIGINS);
  return {
    modelUri: e.MODEL_URI,
    refreshSeconds: e.MODEL_REFRESH_SECONDS,
    maxBodyBytes: e.MAX_BODY_BYTES,
    maxInputPixels: e.MAX_INPUT_PIXELS,
    maxBatch: e.MAX_BATCH,
    apiKeys: list(e.API_KEYS),
    apiKeysSecretArn: e.API_KEYS_SECRET_ARN,
    corsOrigins: cors.length === 1 && cors[0] === 'none' ? [] : cors,
    logLevel: e.LOG_LEVEL,
    ...overrides,
  };
}
