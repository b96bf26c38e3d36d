import { CfnOutput, Duration, Stack, type StackProps } from 'aws-cdk-lib';
import type * as ecs from 'aws-cdk-lib/aws-ecs';
import type * as lambda from 'aws-cdk-lib/aws-lambda';
import type { Construct } from 'constructs';
import type { InfraConfig } from './config.js';
import { acknowledge } from './nag.js';
import { RetrainTrigger } from './retrain.js';
import { Serving } from './serving.js';
import { Storage } from './storage.js';
import { Training } from './training.js';

export interface EdgetuneStackProps extends StackProps {
  config: InfraConfig;
  /** The classify API bundle. */
  apiCode: lambda.Code;
  /** Overrides for tests: a placeholder training image / trigger code. */
  trainingImage?: ecs.ContainerImage;
  triggerCode?: lambda.Code;
}

/** The whole system in one stack: storage, GPU training, the API and the retrain trigger reference each other closely. */
export class EdgetuneStack extends Stack {
  readonly storage: Storage;
  readonly training: Training;
  readonly serving: Serving;
  readonly trigger: RetrainTrigger;

  constructor(scope: Construct, id: string, props: EdgetuneStackProps) {
    super(scope, id, props);
    const c = props.config;

    this.storage = new Storage(this, 'Storage', { removalPolicy: c.removalPolicy });
    const { dataBucket, modelBucket, logBucket } = this.storage;

    this.training = new Training(this, 'Training', {
      dataBucket,
      modelBucket,
      logBucket,
      spot: c.spot,
      maxVcpus: c.maxVcpus,
      vcpus: c.trainVcpus,
      memoryMiB: c.trainMemoryMiB,
      timeout: Duration.minutes(c.trainTimeoutMinutes),
      attempts: c.trainAttempts,
      trainArgs: c.trainArgs,
      baseWeights: c.baseWeights,
      image: props.trainingImage,
    });

    this.serving = new Serving(this, 'Serving', {
      modelBucket,
      logBucket,
      code: props.apiCode,
      handler: c.lambdaHandler,
      modelName: c.modelName,
      memoryMiB: c.lambdaMemory,
      refreshSeconds: c.modelRefreshSeconds,
      throttle: { rate: c.throttleRate, burst: c.throttleBurst },
      corsOrigins: c.corsOrigins
        .split(',')
        .map((s) => s.trim())
        .filter(Boolean),
      functionUrl: c.functionUrl,
      apiKeys: c.publicApi ? 'public' : c.apiKeysSecretArn ? { secretArn: c.apiKeysSecretArn } : 'create',
      reservedConcurrency: c.apiConcurrency,
    });

    this.trigger = new RetrainTrigger(this, 'Retrain', {
      dataBucket,
      jobQueue: this.training.jobQueue,
      jobDefinition: this.training.jobDefinition,
      quietSeconds: c.quietSeconds,
      pollSeconds: c.pollSeconds,
      sweepMinutes: c.sweepMinutes,
      alarmTopicArn: c.alarmTopicArn,
      code: props.triggerCode,
    });

    // CDK's singleton that switches on the data bucket's EventBridge notifications (a deploy-time custom resource).
    for (const child of this.node.children) {
      if (child.node.id.startsWith('BucketNotificationsHandler')) {
        acknowledge(child, [
          {
            id: 'AwsSolutions-IAM4[Policy::arn:<AWS::Partition>:iam::aws:policy/service-role/AWSLambdaBasicExecutionRole]',
            reason:
              "CDK's bucket-notifications custom resource uses the AWS-managed basic execution role (logs only); it runs only during deployment.",
          },
        ]);
      }
    }

    new CfnOutput(this, 'ApiUrl', { value: this.serving.url, description: 'CloudFront URL of the classify API and page' });
    if (this.serving.apiKeySecret) {
      new CfnOutput(this, 'ApiKeySecretArn', {
        value: this.serving.apiKeySecret.secretArn,
        description: 'The API key: aws secretsmanager get-secret-value --secret-id <this> --query SecretString --output text',
      });
    }
    new CfnOutput(this, 'HttpApiUrl', { value: this.serving.stage.url, description: 'API Gateway URL (throttled, no CDN)' });
    if (this.serving.functionUrl) new CfnOutput(this, 'FunctionUrl', { value: this.serving.functionUrl.url });
    new CfnOutput(this, 'DataBucketName', { value: dataBucket.bucketName, description: 'Upload datasets to s3://<this>/datasets/<name>/' });
    new CfnOutput(this, 'ModelBucketName', { value: modelBucket.bucketName });
    new CfnOutput(this, 'JobQueueArn', { value: this.training.jobQueue.jobQueueArn });
    new CfnOutput(this, 'JobDefinitionArn', { value: this.training.jobDefinition.jobDefinitionArn });
    new CfnOutput(this, 'TriggerDeadLetterQueueUrl', { value: this.trigger.deadLetterQueue.queueUrl });
  }
}
