import { z } from 'zod';
import { DATASET_NAME, S3_LAYOUT } from '../core/s3/layout.js';

/** Datasets live under `datasets/<name>/`. */
export const DATASETS_PREFIX = S3_LAYOUT.datasets;
export const MARKER_NAME = '_RETRAIN';

export type ChangeKind = 'upload' | 'delete' | 'marker';

/** One observed change to a dataset (an S3 object created or deleted under its prefix). */
export interface DatasetChange {
  dataset: string;
  key: string;
  kind: ChangeKind;
  /** Epoch ms at which the change happened (the S3 event time). */
  time: number;
}

/** Messages the trigger queue carries, after parsing. */
export type TriggerMessage =
  | { type: 'change'; change: DatasetChange }
  | { type: 'check'; dataset: string }
  | { type: 'sweep' }
  | { type: 'runFinished'; dataset: string; jobId: string; status: string }
  | { type: 'ignored'; reason: string };

/**
 * Maps an object key to a dataset change, or null when the key is not a dataset file
 * (wrong prefix, folder placeholder, or a dataset name outside DATASET_NAME).
 * Keys from real S3 notifications are URL-encoded; only the dataset segment and the marker name
 * matter here, and both are restricted to characters that encoding leaves unchanged.
 */
export function changeFromKey(key: string, deleted: boolean, time: number): DatasetChange | null {
  if (!key.startsWith(DATASETS_PREFIX)) return null;
  const rest = key.slice(DATASETS_PREFIX.length);
  const slash = rest.indexOf('/');
  if (slash <= 0) return null;
  const dataset = rest.slice(0, slash);
  const inner = rest.slice(slash + 1);
  if (!DATASET_NAME.test(dataset) || inner === '' || inner.endsWith('/')) return null;
  const isMarker = inner === MARKER_NAME;
  // Deleting the marker is housekeeping, not a request to retrain nor a data change.
  if (isMarker && deleted) return null;
  return { dataset, key, kind: isMarker ? 'marker' : deleted ? 'delete' : 'upload', time };
}

const IsoTime = z.string().refine((s) => !Number.isNaN(Date.parse(s)), 'invalid event time');

const S3RecordSchema = z.object({
  eventName: z.string(),
  eventTime: IsoTime,
  s3: z.object({ bucket: z.object({ name: z.string() }), object: z.object({ key: z.string() }) }),
});
const S3NotificationSchema = z.object({ Records: z.array(z.unknown()) });

/**
 * Changes from an S3 notification (`{Records: [...]}`), the shape s3rver emits on its 'event'
 * stream and S3 sends to SQS/SNS/Lambda. Records for other buckets are skipped when `bucket` is given.
 */
export function changesFromS3Notification(notification: unknown, bucket?: string): DatasetChange[] {
  const parsed = S3NotificationSchema.safeParse(notification);
  if (!parsed.success) return [];
  const out: DatasetChange[] = [];
  for (const raw of parsed.data.Records) {
    const rec = S3RecordSchema.safeParse(raw);
    if (!rec.success) continue;
    if (bucket && rec.data.s3.bucket.name !== bucket) continue;
    const deleted = rec.data.eventName.startsWith('ObjectRemoved');
    if (!deleted && !rec.data.eventName.startsWith('ObjectCreated')) continue;
    const change = changeFromKey(rec.data.s3.object.key, deleted, parseTime(rec.data.eventTime));
    if (change) out.push(change);
  }
  return out;
}

const EventBridgeS3Schema = z.object({
  source: z.literal('aws.s3'),
  'detail-type': z.enum(['Object Created', 'Object Deleted']),
  time: IsoTime,
  detail: z.object({ bucket: z.object({ name: z.string() }), object: z.object({ key: z.string() }) }),
});

const BatchStateChangeSchema = z.object({
  source: z.literal('aws.batch'),
  'detail-type': z.literal('Batch Job State Change'),
  detail: z.object({
    jobName: z.string(),
    jobId: z.string(),
    status: z.string(),
    parameters: z.record(z.string(), z.string()).optional(),
  }),
});

const CheckMessageSchema = z.object({ type: z.literal('edgetune.check'), dataset: z.string().regex(DATASET_NAME) });

export function checkMessageBody(dataset: string): string {
  return JSON.stringify({ type: 'edgetune.check', dataset });
}

/** What the scheduled EventBridge rule puts on the queue: re-check every dataset with pending changes. */
export const SWEEP_MESSAGE = { type: 'edgetune.sweep' } as const;
const SweepMessageSchema = z.object({ type: z.literal(SWEEP_MESSAGE.type) });

/**
 * Parses one trigger-queue message body: an EventBridge S3 event, an EventBridge Batch job state
 * change, a delayed check the trigger sent itself, or the scheduled sweep. Anything else is reported as ignored.
 */
export function parseTriggerMessage(body: string, jobNamePrefix = 'edgetune-'): TriggerMessage {
  let json: unknown;
  try {
    json = JSON.parse(body);
  } catch {
    return { type: 'ignored', reason: 'message body is not JSON' };
  }
  const check = CheckMessageSchema.safeParse(json);
  if (check.success) return { type: 'check', dataset: check.data.dataset };
  if (SweepMessageSchema.safeParse(json).success) return { type: 'sweep' };

  const s3 = EventBridgeS3Schema.safeParse(json);
  if (s3.success) {
    const deleted = s3.data['detail-type'] === 'Object Deleted';
    const change = changeFromKey(s3.data.detail.object.key, deleted, parseTime(s3.data.time));
    return change ? { type: 'change', change } : { type: 'ignored', reason: `not a dataset file: ${s3.data.detail.object.key}` };
  }

  const batch = BatchStateChangeSchema.safeParse(json);
  if (batch.success) {
    const { jobName, jobId, status, parameters } = batch.data.detail;
    const dataset = parameters?.dataset ?? (jobName.startsWith(jobNamePrefix) ? jobName.slice(jobNamePrefix.length) : '');
    if (!DATASET_NAME.test(dataset)) return { type: 'ignored', reason: `batch job ${jobName} is not a retraining job` };
    return { type: 'runFinished', dataset, jobId, status };
  }
  return { type: 'ignored', reason: 'unrecognised message' };
}

function parseTime(iso: string): number {
  return Date.parse(iso);
}
