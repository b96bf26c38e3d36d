import { z } from 'zod';
import { formatIssues } from '../core/zod-issues.js';

/** Context values arrive as strings from `cdk -c key=value` and as JSON values from cdk.json. */
const bool = z.union([z.boolean(), z.enum(['true', 'false']).transform((s) => s === 'true')]);
const int = (min: number, max: number) => z.coerce.number().int().min(min).max(max);

/**
 * Deployment settings, read from CDK context (`cdk deploy -c spot=true -c lambdaMemory=3008`).
 * Every key is optional; the defaults give an on-demand, retain-everything stack that costs
 * nothing while idle apart from storage.
 */
export const InfraConfigSchema = z.object({
  /** What happens to the buckets on `cdk destroy`: retain (default) or destroy (objects deleted too). */
  removalPolicy: z.enum(['retain', 'destroy']).default('retain'),
  /** Spot instances for training (cheaper; interrupted jobs are retried and resume from the checkpoint). */
  spot: bool.default(false),
  /** Upper bound of the Batch compute environment; the minimum is always 0. */
  maxVcpus: int(4, 1024).default(16),
  /** Per-job vCPUs and memory; the defaults fit g4dn.xlarge / g5.xlarge (4 vCPU, 16 GiB). */
  trainVcpus: int(1, 192).default(4),
  trainMemoryMiB: int(1024, 786_432).default(14_336),
  trainTimeoutMinutes: int(10, 24 * 60).default(180),
  /** Attempts in total when Spot reclaims the instance (other failures are not retried). */
  trainAttempts: int(1, 10).default(5),
  /** Extra `edgetune train` arguments for every run, e.g. "--epochs 10 --fine-tune-epochs 10". */
  trainArgs: z.string().default(''),
  /** Base weights for training (e.g. s3://<model bucket>/models/_base/mobilenet_v2/model.json); default: the CLI's own. */
  baseWeights: z.string().optional(),
  /** Which model the API serves: s3://<model bucket>/models/<modelName>. */
  modelName: z
    .string()
    .regex(/^[A-Za-z0-9][A-Za-z0-9_-]{0,99}$/)
    .default('alpaca'),
  lambdaMemory: int(128, 10_240).default(2048),
  lambdaCodePath: z.string().default('dist/functions/lambda'),
  lambdaHandler: z.string().default('index.handler'),
  modelRefreshSeconds: int(0, 86_400).default(60),
  /** Also expose the function through a Lambda function URL (bypasses API Gateway throttling). */
  functionUrl: bool.default(false),
  throttleRate: int(1, 10_000).default(20),
  throttleBurst: int(1, 5_000).default(40),
  /** Comma-separated CORS origins for the API. */
  corsOrigins: z.string().default('*'),
  /** Secrets Manager secret with API keys. Without it (and without publicApi) the stack creates one. */
  apiKeysSecretArn: z.string().optional(),
  /** Serve the classify API without API keys (anyone who finds the URL can spend your Lambda time). */
  publicApi: bool.default(false),
  /** Reserved concurrency of the API Lambda: caps its cost under abuse. Not set by default (new accounts have a quota of 10). */
  apiConcurrency: int(1, 10_000).optional(),
  /** The scheduled sweep that re-checks datasets with pending changes (a lost check message only delays a run by this much). */
  sweepMinutes: int(5, 1_440).default(15),
  /** Retraining debounce: a dataset is settled after this many seconds without uploads. */
  quietSeconds: int(0, 86_400).default(120),
  /** While a run is active and a follow-up is owed, check again this often. */
  pollSeconds: int(30, 900).default(300),
  /** SNS topic for the dead-letter-queue alarm (optional). */
  alarmTopicArn: z.string().optional(),
});
export type InfraConfig = z.infer<typeof InfraConfigSchema>;

export const CONTEXT_KEYS = Object.keys(InfraConfigSchema.shape) as Array<keyof InfraConfig>;

/** Validates context values; unknown keys are not read, bad values fail synth with the key named. */
export function parseInfraConfig(get: (key: string) => unknown): InfraConfig {
  const raw = Object.fromEntries(CONTEXT_KEYS.map((k) => [k, get(k)]).filter(([, v]) => v !== undefined));
  const r = InfraConfigSchema.safeParse(raw);
  if (!r.success) {
    throw new Error(`invalid CDK context: ${formatIssues(r.error)}`);
  }
  if (r.data.publicApi && r.data.apiKeysSecretArn) {
    throw new Error('invalid CDK context: publicApi=true and apiKeysSecretArn contradict each other; give one of them');
  }
  return r.data;
}
