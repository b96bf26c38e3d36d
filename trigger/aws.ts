import { type BatchClient, type JobStatus, ListJobsCommand, SubmitJobCommand } from '@aws-sdk/client-batch';
import { SendMessageCommand, type SQSClient } from '@aws-sdk/client-sqs';
import { checkMessageBody } from './events.js';
import type { CheckScheduler, JobRunner } from './retrain-trigger.js';

/** SQS caps a message delay at 15 minutes; longer waits are re-scheduled by the check itself. */
export const MAX_SQS_DELAY_SECONDS = 900;

/** Schedules checks as delayed messages on the trigger's own queue. */
export class SqsCheckScheduler implements CheckScheduler {
  readonly maxDelayMs = MAX_SQS_DELAY_SECONDS * 1000;

  constructor(
    private readonly sqs: SQSClient,
    private readonly queueUrl: string,
  ) {}

  async schedule(dataset: string, delayMs: number): Promise<void> {
    const DelaySeconds = Math.min(MAX_SQS_DELAY_SECONDS, Math.max(0, Math.ceil(delayMs / 1000)));
    await this.sqs.send(new SendMessageCommand({ QueueUrl: this.queueUrl, MessageBody: checkMessageBody(dataset), DelaySeconds }));
  }
}

const ACTIVE_STATUSES = new Set<JobStatus | string>(['SUBMITTED', 'PENDING', 'RUNNABLE', 'STARTING', 'RUNNING']);

export interface BatchJobRunnerOptions {
  jobQueue: string;
  jobDefinition: string;
  /** Job names are `<prefix><dataset>`; the Batch state-change parser relies on the same prefix. */
  jobNamePrefix?: string;
}

/** Runs training as AWS Batch jobs named after the dataset, which is also how active runs are found. */
export class BatchJobRunner implements JobRunner {
  private readonly prefix: string;

  constructor(
    private readonly batch: BatchClient,
    private readonly opts: BatchJobRunnerOptions,
  ) {
    this.prefix = opts.jobNamePrefix ?? 'edgetune-';
  }

  jobName(dataset: string): string {
    return `${this.prefix}${dataset}`;
  }

  async submit(dataset: string): Promise<{ id: string }> {
    const res = await this.batch.send(
      new SubmitJobCommand({
        jobName: this.jobName(dataset),
        jobQueue: this.opts.jobQueue,
        jobDefinition: this.opts.jobDefinition,
        parameters: { dataset },
        containerOverrides: { environment: [{ name: 'DATASET', value: dataset }] },
      }),
    );
    if (!res.jobId) throw new Error(`Batch SubmitJob for ${dataset} returned no jobId`);
    return { id: res.jobId };
  }

  async active(dataset: string): Promise<boolean> {
    const name = this.jobName(dataset);
    let nextToken: string | undefined;
    do {
      // With a filter, ListJobs returns every status (newest first); the name match is case-insensitive.
      const res = await this.batch.send(
        new ListJobsCommand({ jobQueue: this.opts.jobQueue, filters: [{ name: 'JOB_NAME', values: [name] }], nextToken }),
      );
      for (const job of res.jobSummaryList ?? []) {
        if (job.jobName === name && job.status && ACTIVE_STATUSES.has(job.status)) return true;
      }
      nextToken = res.nextToken;
    } while (nextToken);
    return false;
  }
}
