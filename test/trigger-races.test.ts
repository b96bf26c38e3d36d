import { BatchClient, ListJobsCommand, SubmitJobCommand } from '@aws-sdk/client-batch';
import { GetObjectCommand, ListObjectsV2Command, NoSuchKey, PutObjectCommand, S3Client, S3ServiceException } from '@aws-sdk/client-s3';
import { SendMessageCommand, SQSClient } from '@aws-sdk/client-sqs';
import { mockClient } from 'aws-sdk-client-mock';
import { beforeEach, describe, expect, it } from 'vitest';
import { ManualClock } from '../trigger/clock.js';
import { SWEEP_MESSAGE } from '../trigger/events.js';
import { createHandler, type SqsEvent, type TriggerEnv, triggerFromEnv } from '../trigger/handler.js';
import { S3StateStore, StateConflictError } from '../trigger/state-store.js';

/**
 * The retrain races with a mocked S3 that honours If-Match / If-None-Match (s3rver ignores them and
 * never answers 412): two trigger instances at once, a redelivered marker, a lost check message.
 */
const BUCKET = 'data-bucket';
const env: TriggerEnv = {
  STATE_BUCKET: BUCKET,
  STATE_PREFIX: 'trigger-state/',
  QUEUE_URL: 'https://sqs.eu-west-1.amazonaws.com/123456789012/trigger',
  JOB_QUEUE: 'arn:aws:batch:eu-west-1:123456789012:job-queue/train',
  JOB_DEFINITION: 'arn:aws:batch:eu-west-1:123456789012:job-definition/train:1',
  JOB_NAME_PREFIX: 'edgetune-',
  QUIET_SECONDS: 120,
  POLL_SECONDS: 300,
  ACTIVE_GRACE_SECONDS: 0,
};

const s3Mock = mockClient(S3Client);
const batchMock = mockClient(BatchClient);
const sqsMock = mockClient(SQSClient);

let objects: Map<string, { body: string; etag: string }>;
let etagSeq = 0;
let conflicts = 0;
let jobs: Array<{ jobId: string; jobName: string; status: string }>;
let delayed: Array<{ body: string; dueAt: number }>;
let clock: ManualClock;
let msgSeq = 0;
/** Called inside ListJobs before it answers: lets a test hold one instance between its read and its write. */
let onListJobs: () => Promise<void>;

const precondition = () =>
  new S3ServiceException({
    name: 'PreconditionFailed',
    $fault: 'client',
    $metadata: { httpStatusCode: 412 },
    message: 'At least one of the pre-conditions you specified did not hold',
  });

beforeEach(() => {
  objects = new Map();
  conflicts = 0;
  jobs = [];
  delayed = [];
  clock = new ManualClock(Date.UTC(2026, 11, 1, 12));
  onListJobs = async () => {};
  s3Mock.reset();
  batchMock.reset();
  sqsMock.reset();
  s3Mock.on(GetObjectCommand).callsFake((input) => {
    const o = objects.get(input.Key);
    if (!o) throw new NoSuchKey({ message: 'The specified key does not exist.', $metadata: { httpStatusCode: 404 } });
    return { Body: { transformToString: async () => o.body }, ETag: o.etag };
  });
  s3Mock.on(PutObjectCommand).callsFake((input) => {
    const cur = objects.get(input.Key);
    if ((input.IfMatch && cur?.etag !== input.IfMatch) || (input.IfNoneMatch === '*' && cur)) {
      conflicts++;
      throw precondition();
    }
    const etag = `"e${++etagSeq}"`;
    objects.set(input.Key, { body: String(input.Body), etag });
    return { ETag: etag };
  });
  s3Mock.on(ListObjectsV2Command).callsFake((input) => ({
    Contents: [...objects.keys()].filter((k) => k.startsWith(input.Prefix ?? '')).map((Key) => ({ Key })),
    IsTruncated: false,
  }));
  batchMock.on(SubmitJobCommand).callsFake((input) => {
    const job = { jobId: `job-${jobs.length + 1}`, jobName: input.jobName, status: 'SUBMITTED' };
    jobs.push(job);
    return { jobId: job.jobId };
  });
  batchMock.on(ListJobsCommand).callsFake(async (input) => {
    await onListJobs();
    return {
      jobSummaryList: jobs
        .filter((j) => j.jobName === input.filters?.[0]?.values?.[0])
        .map((j) => ({ jobId: j.jobId, jobName: j.jobName, status: j.status })),
    };
  });
  sqsMock.on(SendMessageCommand).callsFake((input) => {
    delayed.push({ body: input.MessageBody, dueAt: clock.now() + (input.DelaySeconds ?? 0) * 1000 });
    return { MessageId: `m${++msgSeq}` };
  });
});

/** One Lambda instance: its own trigger (own in-process locks), sharing S3, Batch and SQS with the others. */
function instance() {
  const clients = {
    batch: new BatchClient({ region: 'eu-west-1' }),
    sqs: new SQSClient({ region: 'eu-west-1' }),
    s3: new S3Client({ region: 'eu-west-1' }),
  };
  return createHandler(triggerFromEnv(env, clients, clock), { log: () => {} });
}

const event = (...bodies: string[]): SqsEvent => ({ Records: bodies.map((body) => ({ messageId: `r${++msgSeq}`, body })) });
const s3Event = (key: string, at = clock.now()) =>
  JSON.stringify({
    source: 'aws.s3',
    'detail-type': 'Object Created',
    time: new Date(at).toISOString(),
    detail: { bucket: { name: BUCKET }, object: { key } },
  });
const checkBody = (dataset: string) => JSON.stringify({ type: 'edgetune.check', dataset });
const state = (dataset: string) => JSON.parse(objects.get(`trigger-state/${dataset}.json`)?.body ?? 'null');

/** A barrier: the first `n` callers wait until all `n` have arrived. */
function barrier(n: number): () => Promise<void> {
  let arrived = 0;
  let release!: () => void;
  const all = new Promise<void>((r) => {
    release = r;
  });
  return async () => {
    if (++arrived === n) release();
    if (arrived <= n) await all;
  };
}

describe('S3StateStore conditional writes', () => {
  it('writes with If-None-Match for a new dataset and If-Match afterwards; a stale version is a conflict, never an overwrite', async () => {
    const store = new S3StateStore(new S3Client({ region: 'eu-west-1' }), BUCKET);
    const first = await store.read('cats');
    expect(first.version).toBeUndefined();
    const v1 = await store.write('cats', { ...first.state, lastChangeAt: 1 }, first.version);
    expect(s3Mock.commandCalls(PutObjectCommand)[0].args[0].input).toMatchObject({ IfNoneMatch: '*' });
    // A second writer that also saw "nothing stored" loses.
    await expect(store.write('cats', { ...first.state, lastChangeAt: 2 }, undefined)).rejects.toBeInstanceOf(StateConflictError);
    const v2 = await store.write('cats', { ...first.state, lastChangeAt: 3 }, v1);
    expect(s3Mock.commandCalls(PutObjectCommand)[2].args[0].input).toMatchObject({ IfMatch: v1 });
    await expect(store.write('cats', { ...first.state, lastChangeAt: 4 }, v1)).rejects.toBeInstanceOf(StateConflictError);
    expect((await store.read('cats')).state.lastChangeAt).toBe(3);
    expect((await store.read('cats')).version).toBe(v2);
    expect(await store.datasets()).toEqual(['cats']);
  });
});

describe('retrain trigger races (two Lambda instances, conditional state writes)', () => {
  it('two instances checking a settled dataset at once submit exactly one run', async () => {
    const [a, b] = [instance(), instance()];
    await a(event(s3Event('datasets/alpaca/a/1.jpg'), s3Event('datasets/alpaca/b/2.jpg')));
    await clock.advance(120_000);
    // Both read the state and ask Batch before either writes its claim.
    onListJobs = barrier(2);
    const [ra, rb] = await Promise.all([a(event(checkBody('alpaca'))), b(event(checkBody('alpaca')))]);
    expect([...ra.batchItemFailures, ...rb.batchItemFailures]).toEqual([]);
    expect(batchMock.commandCalls(SubmitJobCommand)).toHaveLength(1);
    expect(conflicts).toBeGreaterThanOrEqual(1);
    expect(state('alpaca')).toMatchObject({ lastChangeAt: null, force: false, submitting: null, lastRun: { id: 'job-1' } });
  });

  it('an upload recorded while another instance submits is kept: one follow-up run after the active one', async () => {
    const [a, b] = [instance(), instance()];
    await a(event(s3Event('datasets/alpaca/a/1.jpg')));
    await clock.advance(120_000);
    // Instance a is inside SubmitJob (its claim written) while b records a new upload.
    let uploadDone!: Promise<unknown>;
    batchMock.on(SubmitJobCommand).callsFake(async (input) => {
      await clock.advance(1_000);
      uploadDone = b(event(s3Event('datasets/alpaca/a/2.jpg')));
      await uploadDone;
      jobs.push({ jobId: `job-${jobs.length + 1}`, jobName: input.jobName, status: 'RUNNING' });
      return { jobId: `job-${jobs.length}` };
    });
    await a(event(checkBody('alpaca')));
    await uploadDone;
    expect(jobs).toHaveLength(1);
    const s = state('alpaca');
    expect(s.lastChangeAt).not.toBeNull(); // the pending upload is not lost
    expect(s.lastRun.id).toBe('job-1');
    // While job-1 runs the follow-up waits; once it has finished, exactly one follow-up starts.
    await clock.advance(120_000);
    await b(event(checkBody('alpaca')));
    expect(jobs).toHaveLength(1);
    jobs[0].status = 'SUCCEEDED';
    batchMock.on(SubmitJobCommand).callsFake((input) => {
      jobs.push({ jobId: `job-${jobs.length + 1}`, jobName: input.jobName, status: 'SUBMITTED' });
      return { jobId: `job-${jobs.length}` };
    });
    await a(event(checkBody('alpaca')));
    await b(event(checkBody('alpaca')));
    expect(jobs.map((j) => j.jobId)).toEqual(['job-1', 'job-2']);
    expect(state('alpaca').lastChangeAt).toBeNull();
  });

  it('a redelivered _RETRAIN marker does not start a second GPU run, even delivered to two instances at once', async () => {
    const [a, b] = [instance(), instance()];
    const marker = s3Event('datasets/dogs/_RETRAIN');
    await clock.advance(500);
    expect((await a(event(marker))).batchItemFailures).toEqual([]);
    expect(jobs).toHaveLength(1);
    jobs[0].status = 'SUCCEEDED';
    await clock.advance(60_000);
    // SQS delivers at least once: the same message again, to both instances concurrently.
    onListJobs = barrier(2);
    await Promise.all([a(event(marker)), b(event(marker))]);
    expect(jobs).toHaveLength(1);
    // A new marker (a later event time) does start one.
    onListJobs = async () => {};
    await a(event(s3Event('datasets/dogs/_RETRAIN')));
    expect(jobs).toHaveLength(2);
  });

  it('two different markers delivered at once to two instances start one run', async () => {
    const [a, b] = [instance(), instance()];
    onListJobs = barrier(2);
    await Promise.all([a(event(s3Event('datasets/fish/_RETRAIN'))), b(event(s3Event('datasets/fish/_RETRAIN', clock.now() + 1)))]);
    expect(jobs).toHaveLength(1);
  });

  it('a lost check message: the scheduled sweep submits the settled upload, and only once', async () => {
    const a = instance();
    await a(event(s3Event('datasets/birds/a/1.jpg'), s3Event('datasets/birds/a/2.jpg')));
    expect(delayed).toHaveLength(1);
    delayed = []; // the delayed check never arrives (lost, or dead-lettered)
    await clock.advance(60_000);
    await a(event(JSON.stringify(SWEEP_MESSAGE))); // still in its quiet period: nothing submitted
    expect(jobs).toHaveLength(0);
    await clock.advance(15 * 60_000);
    const swept = await a(event(JSON.stringify(SWEEP_MESSAGE)));
    expect(swept.batchItemFailures).toEqual([]);
    expect(jobs.map((j) => j.jobName)).toEqual(['edgetune-birds']);
    await clock.advance(15 * 60_000);
    await a(event(JSON.stringify(SWEEP_MESSAGE)));
    expect(jobs).toHaveLength(1);
    // The late check, if it ever turns up, finds nothing to do.
    await a(event(checkBody('birds')));
    expect(jobs).toHaveLength(1);
  });

  it('a claim abandoned by a crashed instance goes stale and the sweep submits', async () => {
    const a = instance();
    await a(event(s3Event('datasets/owls/a/1.jpg')));
    await clock.advance(120_000);
    // Instance crashes after claiming, before SubmitJob: simulate by failing SubmitJob without releasing (a throwing S3 write).
    batchMock.on(SubmitJobCommand).rejectsOnce(new Error('instance died'));
    s3Mock.on(PutObjectCommand).callsFake((input) => {
      const cur = objects.get(input.Key);
      if ((input.IfMatch && cur?.etag !== input.IfMatch) || (input.IfNoneMatch === '*' && cur)) throw precondition();
      if (String(input.Body).includes('"submitting":null') && cur?.body.includes('"token"')) throw new Error('network gone');
      const etag = `"e${++etagSeq}"`;
      objects.set(input.Key, { body: String(input.Body), etag });
      return { ETag: etag };
    });
    expect((await a(event(checkBody('owls')))).batchItemFailures).toHaveLength(1);
    expect(state('owls').submitting).not.toBeNull();
    expect(jobs).toHaveLength(0);
    // Inside the claim's TTL another look defers; after it the sweep takes over.
    await a(event(JSON.stringify(SWEEP_MESSAGE)));
    expect(jobs).toHaveLength(0);
    s3Mock.on(PutObjectCommand).callsFake((input) => {
      const cur = objects.get(input.Key);
      if ((input.IfMatch && cur?.etag !== input.IfMatch) || (input.IfNoneMatch === '*' && cur)) throw precondition();
      const etag = `"e${++etagSeq}"`;
      objects.set(input.Key, { body: String(input.Body), etag });
      return { ETag: etag };
    });
    batchMock.on(SubmitJobCommand).callsFake((input) => {
      jobs.push({ jobId: 'job-late', jobName: input.jobName, status: 'SUBMITTED' });
      return { jobId: 'job-late' };
    });
    await clock.advance(6 * 60_000);
    await a(event(JSON.stringify(SWEEP_MESSAGE)));
    expect(jobs.map((j) => j.jobId)).toEqual(['job-late']);
    expect(state('owls')).toMatchObject({ submitting: null, lastChangeAt: null });
  });
});
