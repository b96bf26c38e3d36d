// Where everything lives in the buckets: training reads datasets/, publishing writes models/,
// the job keeps checkpoints/, the retrain trigger its state. The one copy of these prefixes
// (infra/ scopes its IAM grants with them, trigger/ and cli/ build keys with them).

export const S3_LAYOUT = {
  datasets: 'datasets/',
  models: 'models/',
  checkpoints: 'checkpoints/',
  /** Outside datasets/, so the trigger's own writes never look like dataset changes. */
  triggerState: 'trigger-state/',
} as const;

/** Dataset names double as Batch job-name suffixes and key segments, hence the strict charset. */
export const DATASET_NAME = /^[A-Za-z0-9][A-Za-z0-9_-]{0,99}$/;

/** `s3://<bucket>/datasets/<name>/`: a dataset's images (and label manifest). */
export const datasetUri = (bucket: string, dataset: string) => `s3://${bucket}/${S3_LAYOUT.datasets}${dataset}/`;

/** `s3://<bucket>/models/<name>`: the versions and current.json of a model. */
export const modelUri = (bucket: string, dataset: string) => `s3://${bucket}/${S3_LAYOUT.models}${dataset}`;

/** `s3://<bucket>/checkpoints/<name>/[<job id>/]`: one training job's checkpoint (a retry of the job resumes it). */
export const checkpointUri = (bucket: string, dataset: string, jobId?: string) =>
  `s3://${bucket}/${S3_LAYOUT.checkpoints}${dataset}/${jobId ? `${jobId}/` : ''}`;
