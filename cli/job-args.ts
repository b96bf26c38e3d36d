import { z } from 'zod';
import { edgetuneConfig } from '../core/config.js';
import { checkpointUri, DATASET_NAME, datasetUri, modelUri } from '../core/s3/layout.js';
import { formatIssues } from '../core/zod-issues.js';

/** What one training job works on: the same job in the Batch container and in `npm start`'s child process. */
export interface TrainingJob {
  dataset: string;
  dataBucket: string;
  modelBucket: string;
  /** Local folder the run writes before publishing. */
  outDir: string;
  /** Checkpoints are per job: a retry of the same job resumes, a new job starts fresh. */
  jobId?: string;
  /** One JSON event per line (logs) instead of progress bars (a terminal). */
  json?: boolean;
  /** Extra `edgetune train` flags. */
  extraArgs?: readonly string[];
}

/** The `edgetune train ...` arguments of a training job: train, report, publish through the gate, checkpoint every epoch. */
export function jobArgs(job: TrainingJob): string[] {
  return [
    'train',
    datasetUri(job.dataBucket, job.dataset),
    '--out',
    job.outDir,
    '--publish',
    modelUri(job.modelBucket, job.dataset),
    '--checkpoint',
    checkpointUri(job.modelBucket, job.dataset, job.jobId),
    ...(job.json ? ['--json'] : []),
    ...(job.extraArgs ?? []),
  ];
}

// Set by AWS Batch: the job definition (buckets) and the retrain trigger's SubmitJob (DATASET).
const ContainerEnvSchema = z.object({
  DATASET: z.string().regex(DATASET_NAME, 'must name the dataset under s3://$DATA_BUCKET/datasets/'),
  DATA_BUCKET: z.string().min(3),
  MODEL_BUCKET: z.string().min(3),
  AWS_BATCH_JOB_ID: z.string().min(1).optional(),
});

/** The training container's job (training/Dockerfile runs `edgetune job`), from its environment. */
export function containerJob(env: Record<string, string | undefined> = process.env, extraArgs: readonly string[] = []): TrainingJob {
  const r = ContainerEnvSchema.safeParse({ ...env, AWS_BATCH_JOB_ID: env.AWS_BATCH_JOB_ID || undefined });
  if (!r.success) throw new Error(`the training container's environment is invalid: ${formatIssues(r.error)}`);
  const cfg = edgetuneConfig(env);
  return {
    dataset: r.data.DATASET,
    dataBucket: r.data.DATA_BUCKET,
    modelBucket: r.data.MODEL_BUCKET,
    outDir: cfg.EDGETUNE_OUT ?? '/tmp/edgetune-out',
    jobId: r.data.AWS_BATCH_JOB_ID ?? 'manual',
    json: true,
    extraArgs: [...(cfg.EDGETUNE_TRAIN_ARGS?.split(/\s+/).filter(Boolean) ?? []), ...extraArgs],
  };
}
