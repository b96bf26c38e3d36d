import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { App, Validations } from 'aws-cdk-lib';
import { Capture, Match, type Template } from 'aws-cdk-lib/assertions';
import * as lambda from 'aws-cdk-lib/aws-lambda';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseInfraConfig } from '../infra/config.js';
import { LAMBDA_NODE_MAJOR } from '../infra/lambda-runtime.js';
import { validationErrors } from '../infra/nag.js';
import { EdgetuneStack } from '../infra/stack.js';
import { synthWithNag } from './helpers/synth.js';

// One synthesis of the default stack for the whole file (CDK synth is CPU-heavy): the real training
// image asset (staged, never built) and the real trigger bundle (local esbuild, no Docker), cdk-nag on.
let outdir: string;
let stack: EdgetuneStack;
let t: Template;
let synthError: unknown;

beforeAll(() => {
  outdir = mkdtempSync(path.join(tmpdir(), 'edgetune-cdk-'));
  const app = new App({ outdir });
  const apiDir = mkdtempSync(path.join(tmpdir(), 'edgetune-api-'));
  stack = new EdgetuneStack(app, 'Edgetune', {
    config: parseInfraConfig(() => undefined),
    apiCode: lambda.Code.fromAsset(apiDir),
    env: { account: '123456789012', region: 'eu-west-1' },
  });
  ({ t, synthError } = synthWithNag(app, stack, outdir));
}, 300_000);

afterAll(() => {
  if (outdir) rmSync(outdir, { recursive: true, force: true });
});

type Statement = { Effect: string; Action: string | string[]; Resource: unknown; Condition?: unknown };
const list = <T>(x: T | T[]) => (Array.isArray(x) ? x : [x]);

/** Statements of the inline policies attached to the role whose logical id starts with `rolePrefix`. */
function statementsOf(rolePrefix: string): Statement[] {
  const policies = t.findResources('AWS::IAM::Policy');
  const out: Statement[] = [];
  for (const p of Object.values(policies)) {
    const roles = (p.Properties.Roles as Array<{ Ref: string }>).map((r) => r.Ref);
    if (roles.some((r) => r.startsWith(rolePrefix))) out.push(...p.Properties.PolicyDocument.Statement);
  }
  expect(out.length).toBeGreaterThan(0);
  return out;
}
const logicalId = (type: string, prefix: string) => {
  const ids = Object.keys(t.findResources(type)).filter((id) => id.startsWith(prefix));
  expect(ids).toHaveLength(1);
  return ids[0];
};
const objectsArn = (bucketId: string, prefix: string) => ({ 'Fn::Join': ['', [{ 'Fn::GetAtt': [bucketId, 'Arn'] }, `/${prefix}`]] });

describe('cdk-nag (AwsSolutions)', () => {
  it('reports no unacknowledged errors', () => {
    expect(validationErrors(outdir)).toEqual([]);
    expect(synthError).toBeUndefined();
  });

  it('every acknowledgement carries a written reason', () => {
    const acks: Array<{ id: string; reason: string }> = [];
    for (const c of stack.node.findAll()) {
      for (const m of c.node.metadata) {
        if (m.type === Validations.ACKNOWLEDGED_RULES_METADATA_KEY) {
          for (const [id, v] of Object.entries(m.data as Record<string, { reason?: string } | string>)) {
            acks.push({ id, reason: typeof v === 'string' ? v : (v.reason ?? '') });
          }
        }
      }
    }
    expect(acks.length).toBeGreaterThan(5);
    for (const a of acks) expect(a.reason.length, a.id).toBeGreaterThan(30);
  });
});

describe('storage', () => {
  it('has a data, a model and a log bucket, all encrypted, private, SSL-only and retained', () => {
    t.resourceCountIs('AWS::S3::Bucket', 3);
    for (const [id, b] of Object.entries(t.findResources('AWS::S3::Bucket'))) {
      expect(b.DeletionPolicy, id).toBe('Retain');
      expect(b.Properties.BucketEncryption.ServerSideEncryptionConfiguration[0].ServerSideEncryptionByDefault.SSEAlgorithm).toBe('AES256');
      expect(b.Properties.PublicAccessBlockConfiguration).toEqual({
        BlockPublicAcls: true,
        BlockPublicPolicy: true,
        IgnorePublicAcls: true,
        RestrictPublicBuckets: true,
      });
    }
    const policies = t.findResources('AWS::S3::BucketPolicy');
    expect(Object.keys(policies)).toHaveLength(3);
    for (const p of Object.values(policies)) {
      expect(p.Properties.PolicyDocument.Statement).toEqual(
        expect.arrayContaining([expect.objectContaining({ Effect: 'Deny', Condition: { Bool: { 'aws:SecureTransport': 'false' } } })]),
      );
    }
  });

  it('data and model buckets are versioned, access-logged, and expire old versions', () => {
    const logBucket = logicalId('AWS::S3::Bucket', 'StorageLogBucket');
    for (const prefix of ['StorageDataBucket', 'StorageModelBucket']) {
      const id = logicalId('AWS::S3::Bucket', prefix);
      const props = t.toJSON().Resources[id].Properties;
      expect(props.VersioningConfiguration).toEqual({ Status: 'Enabled' });
      expect(props.LoggingConfiguration.DestinationBucketName).toEqual({ Ref: logBucket });
      expect(props.LifecycleConfiguration.Rules).toEqual(
        expect.arrayContaining([
          expect.objectContaining({ NoncurrentVersionExpiration: { NoncurrentDays: 30 }, Status: 'Enabled' }),
          expect.objectContaining({ AbortIncompleteMultipartUpload: { DaysAfterInitiation: 7 } }),
        ]),
      );
    }
    const model = t.toJSON().Resources[logicalId('AWS::S3::Bucket', 'StorageModelBucket')].Properties;
    expect(model.LifecycleConfiguration.Rules).toEqual(
      expect.arrayContaining([expect.objectContaining({ Prefix: 'checkpoints/', ExpirationInDays: 14 })]),
    );
  });

  it('sends the data bucket events to EventBridge', () => {
    t.hasResourceProperties('Custom::S3BucketNotifications', {
      BucketName: { Ref: logicalId('AWS::S3::Bucket', 'StorageDataBucket') },
      NotificationConfiguration: { EventBridgeConfiguration: {} },
    });
  });
});

describe('training', () => {
  it('VPC has public subnets, no NAT gateway, an S3 gateway endpoint and flow logs', () => {
    t.resourceCountIs('AWS::EC2::NatGateway', 0);
    t.resourceCountIs('AWS::EC2::Subnet', 2);
    t.allResourcesProperties('AWS::EC2::Subnet', { MapPublicIpOnLaunch: true });
    t.hasResourceProperties('AWS::EC2::VPCEndpoint', {
      VpcEndpointType: 'Gateway',
      ServiceName: Match.objectLike({ 'Fn::Join': ['', Match.arrayWith(['.s3'])] }),
    });
    t.hasResourceProperties('AWS::EC2::FlowLog', { LogDestinationType: 's3', TrafficType: 'ALL' });
  });

  it('Batch compute environment: g4dn/g5 only, scales to zero, on-demand, ECS GPU AMI', () => {
    t.resourceCountIs('AWS::Batch::ComputeEnvironment', 1);
    t.hasResourceProperties('AWS::Batch::ComputeEnvironment', {
      Type: 'managed',
      ComputeResources: {
        Type: 'EC2',
        InstanceTypes: ['g4dn', 'g5'],
        MinvCpus: 0,
        MaxvCpus: 16,
        AllocationStrategy: 'BEST_FIT_PROGRESSIVE',
        Ec2Configuration: [{ ImageType: 'ECS_AL2_NVIDIA' }],
        Subnets: Match.arrayWith([{ Ref: Match.stringLikeRegexp('publicSubnet1') }]),
      },
    });
    t.hasResourceProperties('AWS::Batch::JobQueue', {
      ComputeEnvironmentOrder: [
        {
          ComputeEnvironment: {
            'Fn::GetAtt': [logicalId('AWS::Batch::ComputeEnvironment', 'TrainingGpuCompute'), 'ComputeEnvironmentArn'],
          },
          Order: 1,
        },
      ],
    });
  });

  it('job definition: the Docker asset image, 1 GPU, 4 vCPU, 14 GiB, retry on Spot reclaim only, timeout, CloudWatch logs', () => {
    const env = new Capture();
    t.hasResourceProperties('AWS::Batch::JobDefinition', {
      Type: 'container',
      PlatformCapabilities: ['EC2'],
      ContainerProperties: {
        Image: { 'Fn::Sub': Match.stringLikeRegexp('container-assets') },
        ResourceRequirements: Match.arrayEquals([
          { Type: 'MEMORY', Value: '14336' },
          { Type: 'VCPU', Value: '4' },
          { Type: 'GPU', Value: '1' },
        ]),
        JobRoleArn: { 'Fn::GetAtt': [logicalId('AWS::IAM::Role', 'TrainingJobRole'), 'Arn'] },
        LogConfiguration: {
          LogDriver: 'awslogs',
          Options: Match.objectLike({ 'awslogs-group': { Ref: logicalId('AWS::Logs::LogGroup', 'TrainingLogs') } }),
        },
        Environment: env,
      },
      RetryStrategy: {
        Attempts: 5,
        EvaluateOnExit: [
          { Action: 'RETRY', OnStatusReason: 'Host EC2*' },
          { Action: 'EXIT', OnReason: '*' },
        ],
      },
      Timeout: { AttemptDurationSeconds: 180 * 60 },
    });
    const vars = Object.fromEntries((env.asArray() as Array<{ Name: string; Value: unknown }>).map((e) => [e.Name, e.Value]));
    expect(vars.DATA_BUCKET).toEqual({ Ref: logicalId('AWS::S3::Bucket', 'StorageDataBucket') });
    expect(vars.MODEL_BUCKET).toEqual({ Ref: logicalId('AWS::S3::Bucket', 'StorageModelBucket') });
    expect(vars).toHaveProperty('DATASET');
  });

  it('the image asset is built from training/Dockerfile at deploy time (synth stages it, builds nothing)', () => {
    const manifest = JSON.parse(readFileSync(path.join(outdir, 'Edgetune.assets.json'), 'utf8'));
    const images = Object.values(manifest.dockerImages ?? {}) as Array<{
      source: { directory: string; dockerFile?: string; platform?: string };
    }>;
    expect(images).toHaveLength(1);
    expect(images[0].source.dockerFile).toBe('training/Dockerfile');
    expect(images[0].source.platform).toBe('linux/amd64');
    const staged = path.join(outdir, images[0].source.directory);
    expect(existsSync(path.join(staged, 'training/Dockerfile'))).toBe(true);
    expect(existsSync(path.join(staged, 'package-lock.json'))).toBe(true);
    expect(existsSync(path.join(staged, 'node_modules'))).toBe(false);
    // Every file the Dockerfile copies from the context is in the (.dockerignore-filtered) context.
    const dockerfile = readFileSync(path.join(staged, 'training/Dockerfile'), 'utf8');
    const sources = [...dockerfile.matchAll(/^COPY (?!--from)(.+) \S+$/gm)].flatMap((m) => m[1].trim().split(/\s+/));
    expect(sources.length).toBeGreaterThanOrEqual(6);
    for (const src of sources) expect(existsSync(path.join(staged, src)), src).toBe(true);
    // The job runs `edgetune train`: serving and the retrain trigger are not part of the image.
    expect(sources).not.toContain('functions');
    expect(sources).not.toContain('trigger');
    expect(dockerfile).toMatch(/^FROM nvidia\/cuda:11\.2\.\d+-cudnn8-runtime/m);
    expect(dockerfile).toContain('npm install --no-save --omit=dev @tensorflow/tfjs-node-gpu@4.22.0');
  });

  it('job role reads only datasets/*, writes only models/* (and its checkpoints/*)', () => {
    const data = logicalId('AWS::S3::Bucket', 'StorageDataBucket');
    const model = logicalId('AWS::S3::Bucket', 'StorageModelBucket');
    const statements = statementsOf('TrainingJobRole');
    expect(statements).toEqual([
      { Effect: 'Allow', Action: 's3:GetObject', Resource: objectsArn(data, 'datasets/*'), Sid: 'ReadDatasets' },
      {
        Effect: 'Allow',
        Action: 's3:ListBucket',
        Resource: { 'Fn::GetAtt': [data, 'Arn'] },
        Condition: { StringLike: { 's3:prefix': ['datasets/*'] } },
        Sid: 'ListDatasets',
      },
      { Effect: 'Allow', Action: ['s3:GetObject', 's3:PutObject'], Resource: objectsArn(model, 'models/*'), Sid: 'PublishModels' },
      {
        Effect: 'Allow',
        Action: 's3:DeleteObject',
        Resource: objectsArn(model, 'models/*/????????T??????Z-????????/*'),
        Sid: 'DeleteUnverifiedVersions',
      },
      {
        Effect: 'Allow',
        Action: ['s3:GetObject', 's3:PutObject', 's3:DeleteObject'],
        Resource: objectsArn(model, 'checkpoints/*'),
        Sid: 'Checkpoints',
      },
      {
        Effect: 'Allow',
        Action: 's3:ListBucket',
        Resource: { 'Fn::GetAtt': [model, 'Arn'] },
        Condition: { StringLike: { 's3:prefix': ['models/*', 'checkpoints/*'] } },
        Sid: 'ListModelsAndCheckpoints',
      },
    ]);
  });
});

describe('serving', () => {
  it(`Lambda: Node ${LAMBDA_NODE_MAJOR}, arm64, 2048 MB, MODEL_URI on the model bucket, own role`, () => {
    const model = logicalId('AWS::S3::Bucket', 'StorageModelBucket');
    t.hasResourceProperties('AWS::Lambda::Function', {
      Runtime: `nodejs${LAMBDA_NODE_MAJOR}.x`,
      Architectures: ['arm64'],
      MemorySize: 2048,
      Handler: 'index.handler',
      Role: { 'Fn::GetAtt': [logicalId('AWS::IAM::Role', 'ServingFunctionRole'), 'Arn'] },
      Environment: {
        Variables: Match.objectLike({
          MODEL_URI: { 'Fn::Join': ['', ['s3://', { Ref: model }, '/models/alpaca']] },
          MODEL_REFRESH_SECONDS: '60',
          EDGETUNE_ENGINE: 'ort',
        }),
      },
    });
  });

  it('API keys are required by default: the stack creates the secret and the API reads only that one', () => {
    const secret = logicalId('AWS::SecretsManager::Secret', 'ServingApiKeys');
    t.hasResource('AWS::SecretsManager::Secret', {
      Properties: { GenerateSecretString: Match.objectLike({ PasswordLength: 40, ExcludePunctuation: true }) },
      DeletionPolicy: 'Delete',
    });
    t.hasResourceProperties('AWS::Lambda::Function', {
      Environment: { Variables: Match.objectLike({ API_KEYS_SECRET_ARN: { Ref: secret } }) },
    });
    expect(statementsOf('ServingFunctionRole')).toContainEqual({
      Effect: 'Allow',
      Action: 'secretsmanager:GetSecretValue',
      Resource: { Ref: secret },
      Sid: 'ApiKeys',
    });
    expect(t.findOutputs('ApiKeySecretArn').ApiKeySecretArn.Value).toEqual({ Ref: secret });
  });

  it('API role reads only models/*', () => {
    const model = logicalId('AWS::S3::Bucket', 'StorageModelBucket');
    const s3Statements = statementsOf('ServingFunctionRole').filter((s) => list(s.Action).some((a) => a.startsWith('s3:')));
    expect(s3Statements).toEqual([
      { Effect: 'Allow', Action: 's3:GetObject', Resource: objectsArn(model, 'models/*'), Sid: 'ReadModels' },
      {
        Effect: 'Allow',
        Action: 's3:ListBucket',
        Resource: { 'Fn::GetAtt': [model, 'Arn'] },
        Condition: { StringLike: { 's3:prefix': ['models/*'] } },
        Sid: 'ListModels',
      },
    ]);
  });

  it('HTTP API with CORS, throttled $default stage with access logs; no function URL by default', () => {
    t.hasResourceProperties('AWS::ApiGatewayV2::Api', {
      ProtocolType: 'HTTP',
      CorsConfiguration: {
        AllowOrigins: ['*'],
        AllowMethods: Match.arrayWith(['GET', 'POST']),
        AllowHeaders: Match.arrayWith(['content-type']),
      },
    });
    t.hasResourceProperties('AWS::ApiGatewayV2::Stage', {
      StageName: '$default',
      AutoDeploy: true,
      DefaultRouteSettings: { ThrottlingRateLimit: 20, ThrottlingBurstLimit: 40 },
      AccessLogSettings: { DestinationArn: Match.anyValue() },
    });
    t.hasResourceProperties('AWS::ApiGatewayV2::Integration', { IntegrationType: 'AWS_PROXY', PayloadFormatVersion: '2.0' });
    t.resourceCountIs('AWS::Lambda::Url', 0);
  });

  it('CloudFront caches / and /v1/model briefly and never caches /v1/classify*', () => {
    const shortCache = logicalId('AWS::CloudFront::CachePolicy', 'ServingShortCache');
    t.hasResourceProperties('AWS::CloudFront::CachePolicy', {
      CachePolicyConfig: {
        DefaultTTL: 60,
        MinTTL: 0,
        MaxTTL: 300,
        ParametersInCacheKeyAndForwardedToOrigin: Match.objectLike({
          HeadersConfig: { HeaderBehavior: 'whitelist', Headers: ['authorization'] },
        }),
      },
    });
    const behaviors = new Capture();
    t.hasResourceProperties('AWS::CloudFront::Distribution', {
      DistributionConfig: {
        DefaultCacheBehavior: Match.objectLike({ CachePolicyId: { Ref: shortCache }, ViewerProtocolPolicy: 'redirect-to-https' }),
        CacheBehaviors: behaviors,
        Origins: [Match.objectLike({ CustomOriginConfig: Match.objectLike({ OriginProtocolPolicy: 'https-only' }) })],
        Logging: Match.objectLike({ Prefix: 'cloudfront/' }),
      },
    });
    const byPath = Object.fromEntries((behaviors.asArray() as Array<{ PathPattern: string }>).map((b) => [b.PathPattern, b]));
    expect(Object.keys(byPath).sort()).toEqual(['/v1/classify*', '/v1/model']);
    expect(byPath['/v1/model']).toMatchObject({ CachePolicyId: { Ref: shortCache } });
    // 4135ea2d-...: the AWS-managed CachingDisabled policy.
    expect(byPath['/v1/classify*']).toMatchObject({
      CachePolicyId: '4135ea2d-6df8-44a3-9df3-4b5a84be39ad',
      AllowedMethods: expect.arrayContaining(['POST']),
    });
  });
});

describe('retrain trigger', () => {
  it('EventBridge rules: dataset uploads on the data bucket, and finished training jobs, into the queue', () => {
    const queue = logicalId('AWS::SQS::Queue', 'RetrainQueue');
    t.hasResourceProperties('AWS::Events::Rule', {
      EventPattern: {
        source: ['aws.s3'],
        'detail-type': ['Object Created', 'Object Deleted'],
        detail: {
          bucket: { name: [{ Ref: logicalId('AWS::S3::Bucket', 'StorageDataBucket') }] },
          object: { key: [{ prefix: 'datasets/' }] },
        },
      },
      Targets: [Match.objectLike({ Arn: { 'Fn::GetAtt': [queue, 'Arn'] } })],
    });
    t.hasResourceProperties('AWS::Events::Rule', {
      EventPattern: {
        source: ['aws.batch'],
        'detail-type': ['Batch Job State Change'],
        detail: {
          jobQueue: [{ 'Fn::GetAtt': [logicalId('AWS::Batch::JobQueue', 'TrainingJobQueue'), 'JobQueueArn'] }],
          status: ['SUCCEEDED', 'FAILED'],
        },
      },
      Targets: [Match.objectLike({ Arn: { 'Fn::GetAtt': [queue, 'Arn'] } })],
    });
  });

  it('a scheduled sweep puts the sweep message on the trigger queue', () => {
    const queue = logicalId('AWS::SQS::Queue', 'RetrainQueue');
    t.hasResourceProperties('AWS::Events::Rule', {
      ScheduleExpression: 'rate(15 minutes)',
      State: 'ENABLED',
      Targets: [Match.objectLike({ Arn: { 'Fn::GetAtt': [queue, 'Arn'] }, Input: JSON.stringify({ type: 'edgetune.sweep' }) })],
    });
  });

  it('queue: encrypted, DLQ after 5 receives, alarm on the DLQ', () => {
    const dlq = logicalId('AWS::SQS::Queue', 'RetrainDeadLetterQueue');
    t.hasResourceProperties('AWS::SQS::Queue', {
      SqsManagedSseEnabled: true,
      VisibilityTimeout: 360,
      RedrivePolicy: { deadLetterTargetArn: { 'Fn::GetAtt': [dlq, 'Arn'] }, maxReceiveCount: 5 },
    });
    t.hasResourceProperties('AWS::CloudWatch::Alarm', {
      MetricName: 'ApproximateNumberOfMessagesVisible',
      Namespace: 'AWS/SQS',
      Dimensions: [{ Name: 'QueueName', Value: { 'Fn::GetAtt': [dlq, 'QueueName'] } }],
      Threshold: 1,
      ComparisonOperator: 'GreaterThanOrEqualToThreshold',
    });
  });

  it('trigger Lambda: bundled handler, no reserved concurrency, configured from the stack, fed by the queue at maximum concurrency 2', () => {
    t.hasResourceProperties('AWS::Lambda::Function', {
      Runtime: `nodejs${LAMBDA_NODE_MAJOR}.x`,
      Architectures: ['arm64'],
      Handler: 'index.handler',
      ReservedConcurrentExecutions: Match.absent(),
      Environment: {
        Variables: {
          STATE_BUCKET: { Ref: logicalId('AWS::S3::Bucket', 'StorageDataBucket') },
          STATE_PREFIX: 'trigger-state/',
          QUEUE_URL: { Ref: logicalId('AWS::SQS::Queue', 'RetrainQueue') },
          JOB_QUEUE: { 'Fn::GetAtt': [logicalId('AWS::Batch::JobQueue', 'TrainingJobQueue'), 'JobQueueArn'] },
          JOB_DEFINITION: { Ref: logicalId('AWS::Batch::JobDefinition', 'TrainingTrainJob') },
          JOB_NAME_PREFIX: 'edgetune-',
          QUIET_SECONDS: '120',
          POLL_SECONDS: '300',
          ACTIVE_GRACE_SECONDS: '60',
        },
      },
    });
    t.hasResourceProperties('AWS::Lambda::EventSourceMapping', {
      EventSourceArn: { 'Fn::GetAtt': [logicalId('AWS::SQS::Queue', 'RetrainQueue'), 'Arn'] },
      BatchSize: 10,
      FunctionResponseTypes: ['ReportBatchItemFailures'],
      ScalingConfig: { MaximumConcurrency: 2 },
    });
    // No function in the stack reserves concurrency by default (new accounts have a quota of 10).
    for (const f of Object.values(t.findResources('AWS::Lambda::Function')))
      expect(f.Properties.ReservedConcurrentExecutions).toBeUndefined();
    // The esbuild bundle exists in the assembly: bundling ran locally.
    const fn = Object.values(
      t.findResources('AWS::Lambda::Function', {
        Properties: { Environment: { Variables: Match.objectLike({ STATE_PREFIX: 'trigger-state/' }) } },
      }),
    )[0];
    const hash = String(fn.Properties.Code.S3Key).replace(/\.zip$/, '');
    const manifest = JSON.parse(readFileSync(path.join(outdir, 'Edgetune.assets.json'), 'utf8'));
    const staged = path.join(outdir, manifest.files[hash].source.path);
    expect(readFileSync(path.join(staged, 'index.mjs'), 'utf8')).toContain('edgetune.check');
  });

  it('trigger role: SubmitJob only on the queue and job definition, state objects only, no dataset access', () => {
    const data = logicalId('AWS::S3::Bucket', 'StorageDataBucket');
    const statements = statementsOf('RetrainFunctionRole');
    const byAction = (a: string) => statements.filter((s) => list(s.Action).includes(a));
    expect(byAction('batch:SubmitJob')).toEqual([
      expect.objectContaining({
        Resource: [
          { 'Fn::GetAtt': [logicalId('AWS::Batch::JobQueue', 'TrainingJobQueue'), 'JobQueueArn'] },
          { Ref: logicalId('AWS::Batch::JobDefinition', 'TrainingTrainJob') },
        ],
      }),
    ]);
    expect(byAction('s3:GetObject')).toEqual([expect.objectContaining({ Resource: objectsArn(data, 'trigger-state/*') })]);
    expect(byAction('s3:PutObject')).toEqual([expect.objectContaining({ Resource: objectsArn(data, 'trigger-state/*') })]);
    expect(byAction('sqs:SendMessage')).toEqual([
      expect.objectContaining({ Resource: { 'Fn::GetAtt': [logicalId('AWS::SQS::Queue', 'RetrainQueue'), 'Arn'] } }),
    ]);
  });
});

describe('IAM across the stack', () => {
  it('"*" resources only where the action has no resource-level permissions', () => {
    const wildcard: string[] = [];
    for (const p of Object.values(t.findResources('AWS::IAM::Policy'))) {
      for (const s of p.Properties.PolicyDocument.Statement as Statement[]) {
        if (list(s.Resource).includes('*')) wildcard.push(...list(s.Action));
      }
    }
    expect(wildcard.sort()).toEqual(['batch:ListJobs', 'ecr:GetAuthorizationToken']);
  });

  it('no wildcard actions and no managed policies beyond the two AWS requires', () => {
    for (const p of Object.values(t.findResources('AWS::IAM::Policy'))) {
      for (const s of p.Properties.PolicyDocument.Statement as Statement[]) {
        for (const a of list(s.Action)) expect(a).not.toMatch(/\*/);
      }
    }
    const managed = Object.values(t.findResources('AWS::IAM::Role')).flatMap((r) =>
      (r.Properties.ManagedPolicyArns ?? []).map((m: { 'Fn::Join': [string, string[]] }) => m['Fn::Join'][1].at(-1)),
    );
    expect(managed.sort()).toEqual([
      ':iam::aws:policy/service-role/AWSLambdaBasicExecutionRole',
      ':iam::aws:policy/service-role/AmazonEC2ContainerServiceforEC2Role',
    ]);
  });
});

describe('outputs', () => {
  it('API URL, bucket names and the job queue', () => {
    const outputs = t.findOutputs('*');
    expect(outputs.ApiUrl.Value).toEqual({
      'Fn::Join': ['', ['https://', { 'Fn::GetAtt': [logicalId('AWS::CloudFront::Distribution', 'ServingDistribution'), 'DomainName'] }]],
    });
    expect(outputs.DataBucketName.Value).toEqual({ Ref: logicalId('AWS::S3::Bucket', 'StorageDataBucket') });
    expect(outputs.ModelBucketName.Value).toEqual({ Ref: logicalId('AWS::S3::Bucket', 'StorageModelBucket') });
    expect(outputs.JobQueueArn.Value).toEqual({ 'Fn::GetAtt': [logicalId('AWS::Batch::JobQueue', 'TrainingJobQueue'), 'JobQueueArn'] });
    expect(outputs).toHaveProperty('HttpApiUrl');
  });
});
