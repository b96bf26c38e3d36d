import { BatchClient } from '@aws-sdk/client-batch';
import { S3Client } from '@aws-sdk/client-s3';
import { SQSClient } from '@aws-sdk/client-sqs';
import { z } from 'zod';
import { S3_LAYOUT } from '../core/s3/layout.js';
import { BatchJobRunner, SqsCheckScheduler } from './aws.js';
import { type Clock, systemClock } from './clock.js';
import { parseTriggerMessage } from './events.js';
import { type Decision, RetrainTrigger } from './retrain-trigger.js';
import { S3StateStore } from './state-store.js';

/** The parts of the Lambda SQS event the handler reads. */
export interface SqsEvent {
  Records: Array<{ messageId: string; body: string }>;
}
export interface SqsBatchResponse {
  batchItemFailures: Array<{ itemIdentifier: string }>;
}

const Seconds = z.coerce.number().int().nonnegative();

export const TriggerEnvSchema = z.object({
  STATE_BUCKET: z.string().min(1),
  STATE_PREFIX: z.string().default(S3_LAYOUT.triggerState),
  QUEUE_URL: z.string().url(),
  JOB_QUEUE: z.string().min(1),
  JOB_DEFINITION: z.string().min(1),
  JOB_NAME_PREFIX: z.string().default('edgetune-'),
  QUIET_SECONDS: Seconds.default(120),
  POLL_SECONDS: Seconds.default(300),
  ACTIVE_GRACE_SECONDS: Seconds.default(60),
});
export type TriggerEnv = z.infer<typeof TriggerEnvSchema>;

export function triggerFromEnv(env: TriggerEnv, clients = defaultClients(), clock: Clock = systemClock): RetrainTrigger {
  return new RetrainTrigger({
    runner: new BatchJobRunner(clients.batch, {
      jobQueue: env.JOB_QUEUE,
      jobDefinition: env.JOB_DEFINITION,
      jobNamePrefix: env.JOB_NAME_PREFIX,
    }),
    scheduler: new SqsCheckScheduler(clients.sqs, env.QUEUE_URL),
    store: new S3StateStore(clients.s3, env.STATE_BUCKET, env.STATE_PREFIX),
    clock,
    quietMs: env.QUIET_SECONDS * 1000,
    pollMs: env.POLL_SECONDS * 1000,
    activeGraceMs: env.ACTIVE_GRACE_SECONDS * 1000,
    log: (line) => console.log(line),
  });
}

function defaultClients() {
  return { batch: new BatchClient({}), sqs: new SQSClient({}), s3: new S3Client({}) };
}

/**
 * Processes an SQS batch in order. A message whose handling throws (e.g. SubmitJob failed) is
 * reported as a batch item failure: SQS redelivers it and, after maxReceiveCount, moves it to the DLQ.
 */
export function createHandler(trigger: RetrainTrigger, opts: { jobNamePrefix?: string; log?: (entry: object) => void } = {}) {
  const log = opts.log ?? ((entry: object) => console.log(JSON.stringify(entry)));
  return async (event: SqsEvent): Promise<SqsBatchResponse> => {
    const batchItemFailures: SqsBatchResponse['batchItemFailures'] = [];
    for (const record of event.Records) {
      try {
        const msg = parseTriggerMessage(record.body, opts.jobNamePrefix);
        let decision: Decision | { action: 'ignored'; reason: string } | { action: 'swept'; decisions: Decision[] };
        if (msg.type === 'sweep') decision = { action: 'swept', decisions: await trigger.sweep() };
        else if (msg.type === 'change') decision = await trigger.onChange(msg.change);
        else if (msg.type === 'check' || msg.type === 'runFinished') decision = await trigger.check(msg.dataset);
        else decision = msg.type === 'ignored' ? { action: 'ignored', reason: msg.reason } : msg;
        log({ messageId: record.messageId, message: msg.type, ...decision });
      } catch (err) {
        log({ messageId: record.messageId, error: err instanceof Error ? err.message : String(err) });
        batchItemFailures.push({ itemIdentifier: record.messageId });
      }
    }
    return { batchItemFailures };
  };
}

let cached: ((event: SqsEvent) => Promise<SqsBatchResponse>) | undefined;

/** Lambda entry point (configured through the environment the CDK construct sets). */
export async function handler(event: SqsEvent): Promise<SqsBatchResponse> {
  if (!cached) {
    const env = TriggerEnvSchema.parse(process.env);
    cached = createHandler(triggerFromEnv(env), { jobNamePrefix: env.JOB_NAME_PREFIX });
  }
  return cached(event);
}
