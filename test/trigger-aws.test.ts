import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { BatchClient, ListJobsCommand, SubmitJobCommand } from '@aws-sdk/client-batch';
import { GetObjectCommand, PutObjectCommand, S3Client } from '@aws-sdk/client-s3';
import { SendMessageCommand, SQSClient } from '@aws-sdk/client-sqs';
import { mockClient } from 'aws-sdk-client-mock';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { type EmbeddedS3, startS3rver } from '../core/s3/embedded.js';
import { ManualClock } from '../trigger/clock.js';
import { createHandler, type SqsEvent, TriggerEnvSchema, triggerFromEnv } from '../trigger/handler.js';
import { S3StateStore } from '../trigger/state-store.js';

const BUCKET = 'edgetune-data';
const QUEUE_URL = 'https://sqs.eu-west-1.amazonaws.com/123456789012/edgetune-trigger';
const env = TriggerEnvSchema.parse({
  STATE_BUCKET: BUCKET,
  QUEUE_URL,
  JOB_QUEUE: 'arn:aws:batch:eu-west-1:123456789012:job-queue/edgetune',
  JOB_DEFINITION: 'arn:aws:batch:eu-west-1:123456789012:job-definition/edgetune-train',
  QUIET_SECONDS: '120',
  POLL_SECONDS: '300',
  ACTIVE_GRACE_SECONDS: '0',
});

let s3srv: EmbeddedS3;
let dir: string;
let s3: S3Client;
/** S3 notifications s3rver emitted, turned into the EventBridge events the Lambda receives. */
let bridged: string[] = [];

beforeAll(async () => {
  dir = await mkdtemp(path.join(tmpdir(), 'edgetune-trigger-'));
  s3srv = await startS3rver({ dir, buckets: [BUCKET] });
  s3srv.server.on('event', (n) => {
    for (const r of (
      n as { Records: Array<{ eventName: string; eventTime: string; s3: { bucket: { name: string }; object: { key: string } } }> }
    ).Records) {
      bridged.push(
        JSON.stringify({
          source: 'aws.s3',
          'detail-type': r.eventName.startsWith('ObjectRemoved') ? 'Object Deleted' : 'Object Created',
          // EventBridge stamps the event; the fake clock stands in for wall time (s3rver uses the real one).
          time: new Date(clock.now()).toISOString(),
          detail: { bucket: { name: r.s3.bucket.name }, object: { key: r.s3.object.key } },
        }),
      );
    }
  });
  s3 = new S3Client({
    endpoint: s3srv.endpoint,
    forcePathStyle: true,
    region: 'us-east-1',
    credentials: s3srv.credentials,
    requestChecksumCalculation: 'WHEN_REQUIRED',
    responseChecksumValidation: 'WHEN_REQUIRED',
  });
});

afterAll(async () => {
  s3?.destroy();
  await s3srv?.close();
  await rm(dir, { recursive: true, force: true });
});

const batchMock = mockClient(BatchClient);
const sqsMock = mockClient(SQSClient);

/** Fake Batch: jobs stay RUNNING until finished by the test. */
let jobs: Array<{ jobId: string; jobName: string; status: string }>;
/** Fake SQS: delayed check messages, delivered by the test once their delay has passed. */
let delayed: Array<{ body: string; dueAt: number }>;
let clock: ManualClock;
let handle: (event: SqsEvent) => Promise<{ batchItemFailures: Array<{ itemIdentifier: string }> }>;
let msgSeq = 0;

beforeEach(() => {
  bridged = [];
  jobs = [];
  delayed = [];
  clock = new ManualClock(Date.now());
  batchMock.reset();
  sqsMock.reset();
  batchMock.on(SubmitJobCommand).callsFake((input) => {
    const job = { jobId: `job-${jobs.length + 1}`, jobName: input.jobName, status: 'SUBMITTED' };
    jobs.push(job);
    return { jobId: job.jobId, jobName: job.jobName, jobArn: `arn:job/${job.jobId}` };
  });
  batchMock.on(ListJobsCommand).callsFake((input) => ({
    jobSummaryList: jobs
      .filter((j) => j.jobName.toLowerCase() === input.filters?.[0]?.values?.[0]?.toLowerCase())
      .map((j) => ({ jobId: j.jobId, jobName: j.jobName, status: j.status })),
  }));
  sqsMock.on(SendMessageCommand).callsFake((input) => {
    delayed.push({ body: input.MessageBody, dueAt: clock.now() + (input.DelaySeconds ?? 0) * 1000 });
    return { MessageId: `m${++msgSeq}` };
  });
  const trigger = triggerFromEnv(
    env,
    { batch: new BatchClient({ region: 'eu-west-1' }), sqs: new SQSClient({ region: 'eu-west-1' }), s3 },
    clock,
  );
  handle = createHandler(trigger, { log: () => {} });
});

const sqsEvent = (bodies: string[]): SqsEvent => ({ Records: bodies.map((body) => ({ messageId: `r${++msgSeq}`, body })) });

async function put(key: string, body = 'x') {
  await s3.send(new PutObjectCommand({ Bucket: BUCKET, Key: key, Body: body }));
}

/** Delivers the bridged S3 events to the Lambda, as EventBridge -> SQS would. */
async function deliverS3Events() {
  const bodies = bridged.splice(0);
  return handle(sqsEvent(bodies));
}

/** Moves time forward and delivers the delayed checks that fell due, like SQS would. */
async function advanceAndDeliver(ms: number) {
  await clock.advance(ms);
  const due = delayed.filter((m) => m.dueAt <= clock.now());
  delayed = delayed.filter((m) => m.dueAt > clock.now());
  if (due.length) return handle(sqsEvent(due.map((m) => m.body)));
}

describe('retrain trigger Lambda against s3rver (state, events) and mocked Batch/SQS', () => {
  it('submits one Batch job for a settled multi-file upload and keeps its state in S3', async () => {
    for (let i = 0; i < 12; i++) await put(`datasets/alpaca/${i % 2 ? 'alpaca' : 'not_alpaca'}/${i}.jpg`);
    await put('models/alpaca/current.json', '{}'); // not a dataset change
    expect(bridged.length).toBe(13);
    expect((await deliverS3Events()).batchItemFailures).toEqual([]);

    // One delayed check (the quiet period) was scheduled, not one per file.
    expect(sqsMock.commandCalls(SendMessageCommand)).toHaveLength(1);
    expect(sqsMock.commandCalls(SendMessageCommand)[0].args[0].input).toMatchObject({
      QueueUrl: QUEUE_URL,
      DelaySeconds: 120,
      MessageBody: JSON.stringify({ type: 'edgetune.check', dataset: 'alpaca' }),
    });
    expect(batchMock.commandCalls(SubmitJobCommand)).toHaveLength(0);

    const store = new S3StateStore(s3, BUCKET);
    const pending = await store.load('alpaca');
    expect(pending.lastChangeAt).not.toBeNull();
    expect(pending.checkDueAt).toBe(clock.now() + 120_000);

    await advanceAndDeliver(120_000);
    const submits = batchMock.commandCalls(SubmitJobCommand);
    expect(submits).toHaveLength(1);
    expect(submits[0].args[0].input).toMatchObject({
      jobName: 'edgetune-alpaca',
      jobQueue: env.JOB_QUEUE,
      jobDefinition: env.JOB_DEFINITION,
      parameters: { dataset: 'alpaca' },
      containerOverrides: { environment: [{ name: 'DATASET', value: 'alpaca' }] },
    });
    // State object is real JSON in the bucket, outside datasets/.
    const raw = await s3.send(new GetObjectCommand({ Bucket: BUCKET, Key: 'trigger-state/alpaca.json' }));
    const saved = JSON.parse(await raw.Body!.transformToString());
    expect(saved).toMatchObject({ lastChangeAt: null, force: false, lastRun: { id: 'job-1', reason: 'settled' } });
    expect(bridged.filter((b) => b.includes('trigger-state')).length).toBeGreaterThan(0);
    expect((await deliverS3Events()).batchItemFailures).toEqual([]); // state writes' own events are ignored
    expect(batchMock.commandCalls(SubmitJobCommand)).toHaveLength(1);
  });

  it('defers while the Batch job is active and submits exactly one follow-up after it finishes', async () => {
    await put('datasets/llama/a/1.jpg');
    await deliverS3Events();
    await advanceAndDeliver(120_000);
    expect(jobs).toHaveLength(1);
    jobs[0].status = 'RUNNING';

    await clock.advance(1_000);
    await put('datasets/llama/a/2.jpg');
    await put('datasets/llama/a/3.jpg');
    await deliverS3Events();
    await advanceAndDeliver(120_000); // settled, but job-1 runs: deferred, poll scheduled
    await advanceAndDeliver(300_000);
    expect(jobs).toHaveLength(1);
    expect(batchMock.commandCalls(ListJobsCommand).length).toBeGreaterThanOrEqual(2);

    jobs[0].status = 'SUCCEEDED';
    // Batch's state-change event reaches the queue too: the follow-up starts without waiting for the poll.
    const finished = JSON.stringify({
      source: 'aws.batch',
      'detail-type': 'Batch Job State Change',
      detail: { jobName: 'edgetune-llama', jobId: 'job-1', status: 'SUCCEEDED', parameters: { dataset: 'llama' } },
    });
    await handle(sqsEvent([finished]));
    expect(jobs).toHaveLength(2);
    await advanceAndDeliver(300_000); // the outstanding poll finds nothing left to do
    await advanceAndDeliver(900_000);
    expect(jobs).toHaveLength(2);
  });

  it('the _RETRAIN marker submits at once', async () => {
    await put('datasets/cats/_RETRAIN', '');
    const res = await deliverS3Events();
    expect(res.batchItemFailures).toEqual([]);
    expect(jobs.map((j) => j.jobName)).toEqual(['edgetune-cats']);
    expect(sqsMock.commandCalls(SendMessageCommand)).toHaveLength(0);
  });

  it('a failed SubmitJob is a batch item failure (SQS retries, then the DLQ); the redelivery submits', async () => {
    batchMock
      .on(SubmitJobCommand)
      .rejectsOnce(new Error('Batch is down'))
      .callsFake((input) => {
        jobs.push({ jobId: 'job-retry', jobName: input.jobName, status: 'SUBMITTED' });
        return { jobId: 'job-retry' };
      });
    await put('datasets/dogs/_RETRAIN', '');
    const bodies = bridged.splice(0);
    const first = await handle({ Records: [{ messageId: 'm-fail', body: bodies[0] }] });
    expect(first.batchItemFailures).toEqual([{ itemIdentifier: 'm-fail' }]);
    expect(jobs).toHaveLength(0);
    const again = await handle({ Records: [{ messageId: 'm-fail', body: bodies[0] }] });
    expect(again.batchItemFailures).toEqual([]);
    expect(jobs.map((j) => j.jobId)).toEqual(['job-retry']);
  });

  it('clamps long quiet periods to the SQS maximum delay and re-checks until settled', async () => {
    const long = triggerFromEnv(
      { ...env, QUIET_SECONDS: 1_800 },
      { batch: new BatchClient({ region: 'eu-west-1' }), sqs: new SQSClient({ region: 'eu-west-1' }), s3 },
      clock,
    );
    handle = createHandler(long, { log: () => {} });
    await put('datasets/birds/a/1.jpg');
    await deliverS3Events();
    expect(sqsMock.commandCalls(SendMessageCommand)[0].args[0].input.DelaySeconds).toBe(900);
    await advanceAndDeliver(900_000);
    expect(jobs).toHaveLength(0);
    await advanceAndDeliver(900_000);
    expect(jobs.map((j) => j.jobName)).toEqual(['edgetune-birds']);
  });
});
