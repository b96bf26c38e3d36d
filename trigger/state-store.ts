import { GetObjectCommand, ListObjectsV2Command, NoSuchKey, PutObjectCommand, type S3Client } from '@aws-sdk/client-s3';
import { z } from 'zod';
import { S3_LAYOUT } from '../core/s3/layout.js';

/** What the trigger remembers per dataset between events. */
export const DatasetStateSchema = z.object({
  /** Time of the newest change not yet covered by a submitted run; null when clean. */
  lastChangeAt: z.number().nullable(),
  /** A `_RETRAIN` marker is waiting: run as soon as nothing is active, no quiet period. */
  force: z.boolean(),
  /** The S3 event time of the newest marker recorded in `force` (a redelivery of it is then ignored). */
  forceAt: z.number().nullable().default(null),
  /** When the pending delayed check is due; null when none is scheduled. */
  checkDueAt: z.number().nullable(),
  /**
   * A trigger instance claimed the right to submit (written before SubmitJob, cleared after): others
   * treat the dataset as busy until `at + claim TTL`, so two instances never both submit.
   */
  submitting: z.object({ token: z.string(), at: z.number() }).nullable().default(null),
  lastRun: z
    .object({
      id: z.string(),
      submittedAt: z.number(),
      reason: z.enum(['settled', 'marker']),
      /** Changes (and markers) with an event time up to this are in that run. Default submittedAt. */
      coveredUntil: z.number().optional(),
    })
    .nullable(),
});
export type DatasetState = z.infer<typeof DatasetStateSchema>;

export const emptyState = (): DatasetState => ({
  lastChangeAt: null,
  force: false,
  forceAt: null,
  checkDueAt: null,
  submitting: null,
  lastRun: null,
});

/** A state and the version it was read at (an S3 ETag; undefined when no state was stored yet). */
export interface VersionedState {
  state: DatasetState;
  version: string | undefined;
}

/** Another writer changed the state since it was read: reload and decide again. */
export class StateConflictError extends Error {
  constructor(dataset: string) {
    super(`trigger state of ${dataset} changed concurrently`);
    this.name = 'StateConflictError';
  }
}

/**
 * Per-dataset trigger state with compare-and-swap writes: `write` succeeds only if the stored
 * version is still `version` (undefined: only if nothing is stored), otherwise it throws
 * StateConflictError. This is what makes several trigger instances at once safe.
 */
export interface StateStore {
  read(dataset: string): Promise<VersionedState>;
  /** Returns the new version. */
  write(dataset: string, state: DatasetState, version: string | undefined): Promise<string>;
  /** Every dataset with stored state (the scheduled sweep looks at each). */
  datasets(): Promise<string[]>;
}

export class MemoryStateStore implements StateStore {
  private readonly states = new Map<string, { state: DatasetState; version: string }>();
  private seq = 0;

  async read(dataset: string): Promise<VersionedState> {
    const s = this.states.get(dataset);
    return s ? { state: structuredClone(s.state), version: s.version } : { state: emptyState(), version: undefined };
  }

  async write(dataset: string, state: DatasetState, version: string | undefined): Promise<string> {
    if (this.states.get(dataset)?.version !== version) throw new StateConflictError(dataset);
    const next = `v${++this.seq}`;
    this.states.set(dataset, { state: structuredClone(DatasetStateSchema.parse(state)), version: next });
    return next;
  }

  async datasets(): Promise<string[]> {
    return [...this.states.keys()];
  }

  async load(dataset: string): Promise<DatasetState> {
    return (await this.read(dataset)).state;
  }
}

function isPreconditionFailure(err: unknown): boolean {
  const e = err as { name?: string; $metadata?: { httpStatusCode?: number } };
  // 412: If-Match / If-None-Match failed; 409: a concurrent conditional write to the same key is in progress.
  return e?.$metadata?.httpStatusCode === 412 || e?.$metadata?.httpStatusCode === 409 || e?.name === 'PreconditionFailed';
}

/**
 * Keeps each dataset's state as a small JSON object (`<prefix><dataset>.json`) in S3, so a
 * stateless Lambda can debounce. Writes are conditional (If-Match the ETag read, or If-None-Match
 * `*` for a new dataset): several trigger instances at once never overwrite each other's decision.
 * The prefix must lie outside `datasets/` so state writes never look like dataset changes.
 */
export class S3StateStore implements StateStore {
  constructor(
    private readonly s3: S3Client,
    private readonly bucket: string,
    private readonly prefix: string = S3_LAYOUT.triggerState,
  ) {}

  key(dataset: string): string {
    return `${this.prefix}${dataset}.json`;
  }

  async read(dataset: string): Promise<VersionedState> {
    let text: string;
    let etag: string | undefined;
    try {
      const res = await this.s3.send(new GetObjectCommand({ Bucket: this.bucket, Key: this.key(dataset) }));
      text = (await res.Body?.transformToString()) ?? '';
      etag = res.ETag;
    } catch (err) {
      if (err instanceof NoSuchKey || (err as { name?: string }).name === 'NoSuchKey') return { state: emptyState(), version: undefined };
      throw err;
    }
    const parsed = DatasetStateSchema.safeParse(safeJson(text));
    if (!parsed.success) {
      throw new Error(`corrupt trigger state s3://${this.bucket}/${this.key(dataset)}: ${parsed.error.message}`);
    }
    if (!etag) throw new Error(`s3://${this.bucket}/${this.key(dataset)}: GetObject returned no ETag; conditional writes need one`);
    return { state: parsed.data, version: etag };
  }

  async write(dataset: string, state: DatasetState, version: string | undefined): Promise<string> {
    try {
      const out = await this.s3.send(
        new PutObjectCommand({
          Bucket: this.bucket,
          Key: this.key(dataset),
          Body: JSON.stringify(DatasetStateSchema.parse(state)),
          ContentType: 'application/json',
          ...(version ? { IfMatch: version } : { IfNoneMatch: '*' }),
        }),
      );
      return out.ETag ?? '';
    } catch (err) {
      if (isPreconditionFailure(err)) throw new StateConflictError(dataset);
      throw err;
    }
  }

  async datasets(): Promise<string[]> {
    const out: string[] = [];
    let token: string | undefined;
    do {
      const page = await this.s3.send(new ListObjectsV2Command({ Bucket: this.bucket, Prefix: this.prefix, ContinuationToken: token }));
      for (const o of page.Contents ?? []) {
        const name = o.Key?.slice(this.prefix.length);
        if (name?.endsWith('.json') && !name.includes('/')) out.push(name.slice(0, -'.json'.length));
      }
      token = page.IsTruncated ? page.NextContinuationToken : undefined;
    } while (token);
    return out;
  }

  /** The state alone (tests, debugging). */
  async load(dataset: string): Promise<DatasetState> {
    return (await this.read(dataset)).state;
  }
}

function safeJson(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return undefined;
  }
}
