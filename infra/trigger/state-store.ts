import { GetObjectCommand, NoSuchKey, PutObjectCommand, type S3Client } from '@aws-sdk/client-s3';
import { z } from 'zod';

/** What the trigger remembers per dataset between events. */
export const DatasetStateSchema = z.object({
  /** Time of the newest change not yet covered by a submitted run; null when clean. */
  lastChangeAt: z.number().nullable(),
  /** A `_RETRAIN` marker is waiting: run as soon as nothing is active, no quiet period. */
  force: z.boolean(),
  /** When the pending delayed check is due; null when none is scheduled. */
  checkDueAt: z.number().nullable(),
  lastRun: z.object({ id: z.string(), submittedAt: z.number(), reason: z.enum(['settled', 'marker']) }).nullable(),
});
export type DatasetState = z.infer<typeof DatasetStateSchema>;

export const emptyState = (): DatasetState => ({ lastChangeAt: null, force: false, checkDueAt: null, lastRun: null });

export interface StateStore {
  load(dataset: string): Promise<DatasetState>;
  save(dataset: string, state: DatasetState): Promise<void>;
}

export class MemoryStateStore implements StateStore {
  private readonly states = new Map<string, DatasetState>();

  async load(dataset: string): Promise<DatasetState> {
    return structuredClone(this.states.get(dataset) ?? emptyState());
  }

  async save(dataset: string, state: DatasetState): Promise<void> {
    this.states.set(dataset, structuredClone(state));
  }
}

/**
 * Keeps each dataset's state as a small JSON object (`<prefix><dataset>.json`) in S3, so a
 * stateless Lambda can debounce. Writers must be serialised (the trigger Lambda runs with a
 * reserved concurrency of 1); the prefix must lie outside `datasets/` so state writes never
 * look like dataset changes.
 */
export class S3StateStore implements StateStore {
  constructor(
    private readonly s3: S3Client,
    private readonly bucket: string,
    private readonly prefix = 'trigger-state/',
  ) {}

  key(dataset: string): string {
    return `${this.prefix}${dataset}.json`;
  }

  async load(dataset: string): Promise<DatasetState> {
    let text: string;
    try {
      const res = await this.s3.send(new GetObjectCommand({ Bucket: this.bucket, Key: this.key(dataset) }));
      text = (await res.Body?.transformToString()) ?? '';
    } catch (err) {
      if (err instanceof NoSuchKey || (err as { name?: string }).name === 'NoSuchKey') return emptyState();
      throw err;
    }
    const parsed = DatasetStateSchema.safeParse(safeJson(text));
    if (!parsed.success) {
      throw new Error(`corrupt trigger state s3://${this.bucket}/${this.key(dataset)}: ${parsed.error.message}`);
    }
    return parsed.data;
  }

  async save(dataset: string, state: DatasetState): Promise<void> {
    await this.s3.send(
      new PutObjectCommand({
        Bucket: this.bucket,
        Key: this.key(dataset),
        Body: JSON.stringify(DatasetStateSchema.parse(state)),
        ContentType: 'application/json',
      }),
    );
  }
}

function safeJson(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return undefined;
  }
}
