import path from 'node:path';
import { Duration } from 'aws-cdk-lib';
import type * as batch from 'aws-cdk-lib/aws-batch';
import * as cloudwatch from 'aws-cdk-lib/aws-cloudwatch';
import * as cwActions from 'aws-cdk-lib/aws-cloudwatch-actions';
import * as events from 'aws-cdk-lib/aws-events';
import * as targets from 'aws-cdk-lib/aws-events-targets';
import * as iam from 'aws-cdk-lib/aws-iam';
import * as lambda from 'aws-cdk-lib/aws-lambda';
import { SqsEventSource } from 'aws-cdk-lib/aws-lambda-event-sources';
import * as nodejs from 'aws-cdk-lib/aws-lambda-nodejs';
import type * as s3 from 'aws-cdk-lib/aws-s3';
import * as sns from 'aws-cdk-lib/aws-sns';
import * as sqs from 'aws-cdk-lib/aws-sqs';
import { Construct } from 'constructs';
import { SWEEP_MESSAGE } from '../trigger/events.js';
import { functionRoleAndLogs } from './function-role.js';
import { LAMBDA_RUNTIME } from './lambda-runtime.js';
import { acknowledge, arnRef } from './nag.js';
import { PREFIX } from './storage.js';
import { REPO_ROOT } from './training.js';

export const JOB_NAME_PREFIX = 'edgetune-';

export interface RetrainTriggerProps {
  dataBucket: s3.IBucket;
  jobQueue: batch.IJobQueue;
  jobDefinition: batch.IJobDefinition;
  quietSeconds: number;
  pollSeconds: number;
  /** How often the scheduled sweep re-checks datasets with pending changes. Default 15. */
  sweepMinutes?: number;
  alarmTopicArn?: string;
  /** The trigger Lambda's code; default: trigger/handler.ts bundled with the local esbuild (no Docker). */
  code?: lambda.Code;
}

/**
 * Retraining on upload: S3 "Object Created/Deleted" events under datasets/ and Batch job state
 * changes go through EventBridge to an SQS queue; a Lambda debounces per dataset (delayed check
 * messages on the same queue, state in the data bucket under trigger-state/, written with
 * conditional puts so its instances never both submit) and submits Batch jobs. A scheduled rule
 * puts a sweep message on the queue so a settled upload whose check message was lost still trains.
 * Messages that keep failing land in a DLQ with an alarm.
 */
export class RetrainTrigger extends Construct {
  readonly queue: sqs.Queue;
  readonly deadLetterQueue: sqs.Queue;
  readonly fn: lambda.Function;
  readonly role: iam.Role;
  readonly s3Rule: events.Rule;
  readonly batchRule: events.Rule;
  readonly sweepRule: events.Rule;
  readonly dlqAlarm: cloudwatch.Alarm;

  constructor(scope: Construct, id: string, props: RetrainTriggerProps) {
    super(scope, id);
    const timeout = Duration.seconds(60);

    this.deadLetterQueue = new sqs.Queue(this, 'DeadLetterQueue', {
      encryption: sqs.QueueEncryption.SQS_MANAGED,
      enforceSSL: true,
      retentionPeriod: Duration.days(14),
    });
    this.queue = new sqs.Queue(this, 'Queue', {
      encryption: sqs.QueueEncryption.SQS_MANAGED,
      enforceSSL: true,
      // Six times the function timeout, as Lambda recommends for SQS sources.
      visibilityTimeout: Duration.seconds(timeout.toSeconds() * 6),
      deadLetterQueue: { queue: this.deadLetterQueue, maxReceiveCount: 5 },
    });

    this.s3Rule = new events.Rule(this, 'DatasetChanged', {
      description: 'edgetune: objects created/deleted under datasets/ in the data bucket',
      eventPattern: {
        source: ['aws.s3'],
        detailType: ['Object Created', 'Object Deleted'],
        detail: { bucket: { name: [props.dataBucket.bucketName] }, object: { key: [{ prefix: PREFIX.datasets }] } },
      },
      targets: [new targets.SqsQueue(this.queue)],
    });
    this.batchRule = new events.Rule(this, 'RunFinished', {
      description: 'edgetune: a training job finished (a follow-up run may be owed)',
      eventPattern: {
        source: ['aws.batch'],
        detailType: ['Batch Job State Change'],
        detail: { jobQueue: [props.jobQueue.jobQueueArn], status: ['SUCCEEDED', 'FAILED'] },
      },
      targets: [new targets.SqsQueue(this.queue)],
    });

    this.sweepRule = new events.Rule(this, 'Sweep', {
      description: 'edgetune: re-check datasets with pending changes (a lost or dead-lettered check message must not strand an upload)',
      schedule: events.Schedule.rate(Duration.minutes(props.sweepMinutes ?? 15)),
      targets: [new targets.SqsQueue(this.queue, { message: events.RuleTargetInput.fromObject(SWEEP_MESSAGE) })],
    });

    const { role, logGroup } = functionRoleAndLogs(
      this,
      'edgetune retrain trigger: trigger-state/* in the data bucket, SubmitJob on the training queue',
    );
    this.role = role;
    this.role.addToPrincipalPolicy(
      new iam.PolicyStatement({
        sid: 'TriggerState',
        actions: ['s3:GetObject', 's3:PutObject'],
        resources: [props.dataBucket.arnForObjects(`${PREFIX.triggerState}*`)],
      }),
    );
    // Listing lets a missing state object read as NoSuchKey (a new dataset) instead of AccessDenied.
    this.role.addToPrincipalPolicy(
      new iam.PolicyStatement({
        sid: 'ListTriggerState',
        actions: ['s3:ListBucket'],
        resources: [props.dataBucket.bucketArn],
        conditions: { StringLike: { 's3:prefix': [`${PREFIX.triggerState}*`] } },
      }),
    );
    this.role.addToPrincipalPolicy(
      new iam.PolicyStatement({
        sid: 'SubmitTraining',
        actions: ['batch:SubmitJob'],
        resources: [props.jobQueue.jobQueueArn, props.jobDefinition.jobDefinitionArn],
      }),
    );
    this.role.addToPrincipalPolicy(new iam.PolicyStatement({ sid: 'FindActiveRuns', actions: ['batch:ListJobs'], resources: ['*'] }));

    const environment = {
      STATE_BUCKET: props.dataBucket.bucketName,
      STATE_PREFIX: PREFIX.triggerState,
      QUEUE_URL: this.queue.queueUrl,
      JOB_QUEUE: props.jobQueue.jobQueueArn,
      JOB_DEFINITION: props.jobDefinition.jobDefinitionArn,
      JOB_NAME_PREFIX,
      QUIET_SECONDS: String(props.quietSeconds),
      POLL_SECONDS: String(props.pollSeconds),
      ACTIVE_GRACE_SECONDS: '60',
    };
    const common = {
      runtime: LAMBDA_RUNTIME,
      architecture: lambda.Architecture.ARM_64,
      memorySize: 256,
      timeout,
      role: this.role,
      logGroup,
      environment,
      description: 'edgetune retrain trigger (debounce per dataset, submit Batch jobs)',
    };
    this.fn = props.code
      ? new lambda.Function(this, 'Function', { ...common, code: props.code, handler: 'index.handler' })
      : new nodejs.NodejsFunction(this, 'Function', {
          ...common,
          entry: path.join(REPO_ROOT, 'trigger/handler.ts'),
          handler: 'handler',
          projectRoot: REPO_ROOT,
          depsLockFilePath: path.join(REPO_ROOT, 'package-lock.json'),
          bundling: {
            format: nodejs.OutputFormat.ESM,
            target: 'node20',
            minify: true,
            sourceMap: true,
            // The Node.js runtimes ship AWS SDK v3; bundle everything else (zod).
            externalModules: ['@aws-sdk/*'],
            forceDockerBundling: false,
            banner: "import{createRequire}from'module';const require=createRequire(import.meta.url);",
          },
        });
    this.queue.grantSendMessages(this.role);
    // Maximum concurrency (not reserved concurrency): pollers are never throttled, so throttled receives
    // cannot push messages to the DLQ. Its minimum is 2: correctness comes from the conditional state writes.
    this.fn.addEventSource(new SqsEventSource(this.queue, { batchSize: 10, reportBatchItemFailures: true, maxConcurrency: 2 }));

    this.dlqAlarm = new cloudwatch.Alarm(this, 'DeadLetterAlarm', {
      alarmDescription: 'edgetune: retrain trigger messages failed repeatedly (e.g. Batch SubmitJob errors); see the trigger function logs',
      metric: this.deadLetterQueue.metricApproximateNumberOfMessagesVisible({ period: Duration.minutes(5), statistic: 'Maximum' }),
      threshold: 1,
      evaluationPeriods: 1,
      comparisonOperator: cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
      treatMissingData: cloudwatch.TreatMissingData.NOT_BREACHING,
    });
    if (props.alarmTopicArn) {
      this.dlqAlarm.addAlarmAction(new cwActions.SnsAction(sns.Topic.fromTopicArn(this, 'AlarmTopic', props.alarmTopicArn)));
    }

    acknowledge(this.deadLetterQueue, [
      { id: 'AwsSolutions-SQS3', reason: 'This queue is the dead-letter queue; it is watched by a CloudWatch alarm.' },
    ]);
    acknowledge(this.role, [
      { id: 'AwsSolutions-IAM5[Resource::*]', reason: 'batch:ListJobs has no resource-level permissions: its resource must be "*".' },
      {
        id: `AwsSolutions-IAM5[Resource::${arnRef(props.dataBucket)}/${PREFIX.triggerState}*]`,
        reason: 'trigger-state/* is one prefix holding one small state object per dataset; dataset names are not known at deploy time.',
      },
    ]);
  }
}
