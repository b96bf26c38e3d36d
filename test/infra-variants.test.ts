import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { App, Stack, Validations } from 'aws-cdk-lib';
import { Match, Template } from 'aws-cdk-lib/assertions';
import * as ecs from 'aws-cdk-lib/aws-ecs';
import * as lambda from 'aws-cdk-lib/aws-lambda';
import * as s3 from 'aws-cdk-lib/aws-s3';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseInfraConfig } from '../infra/config.js';
import { AwsSolutionsChecks, validationErrors } from '../infra/nag.js';
import { EdgetuneStack } from '../infra/stack.js';
import { synthWithNag } from './helpers/synth.js';

const SECRET = 'arn:aws:secretsmanager:eu-west-1:123456789012:secret:edgetune-keys-AbCdEf';
const TOPIC = 'arn:aws:sns:eu-west-1:123456789012:ops';

describe('context parsing', () => {
  it('keys are required by default; publicApi=true and a secret ARN contradict each other', () => {
    const c = parseInfraConfig(() => undefined);
    expect(c.publicApi).toBe(false);
    expect(c.apiConcurrency).toBeUndefined();
    expect(c.sweepMinutes).toBe(15);
    expect(() => parseInfraConfig((k) => ({ publicApi: 'true', apiKeysSecretArn: SECRET })[k])).toThrow(/contradict/);
    expect(() => parseInfraConfig((k) => ({ apiConcurrency: '0' })[k])).toThrow(/apiConcurrency/);
  });

  it('defaults: on-demand, retain, 4 vCPU / 14 GiB, 2 GB Lambda, 2-minute quiet period', () => {
    const c = parseInfraConfig(() => undefined);
    expect(c).toMatchObject({
      spot: false,
      removalPolicy: 'retain',
      trainVcpus: 4,
      trainMemoryMiB: 14_336,
      lambdaMemory: 2048,
      quietSeconds: 120,
    });
  });

  it('accepts -c strings and cdk.json values, and names the bad key', () => {
    const ctx: Record<string, unknown> = { spot: 'true', lambdaMemory: '3008', functionUrl: true };
    expect(parseInfraConfig((k) => ctx[k])).toMatchObject({ spot: true, lambdaMemory: 3008, functionUrl: true });
    expect(() => parseInfraConfig((k) => ({ lambdaMemory: '64' })[k])).toThrow(/lambdaMemory/);
    expect(() => parseInfraConfig((k) => ({ spot: 'yes' })[k])).toThrow(/spot/);
    expect(() => parseInfraConfig((k) => ({ modelName: '../x' })[k])).toThrow(/modelName/);
  });
});

describe('cdk-nag catches violations (negative control for the zero-errors test)', () => {
  it('fails synthesis on an unlogged, non-SSL bucket', () => {
    const app = new App({ outdir: mkdtempSync(path.join(tmpdir(), 'edgetune-nag-')) });
    const stack = new Stack(app, 'Bad');
    new s3.Bucket(stack, 'Bucket');
    Validations.of(app).addPlugins(new AwsSolutionsChecks(app));
    expect(() => Template.fromStack(stack)).toThrow(/AwsSolutions-S1/);
    const report = JSON.parse(readFileSync(path.join(app.outdir, 'validation-report.json'), 'utf8'));
    const rules = report.pluginReports.flatMap((r: { violations: Array<{ ruleName: string }> }) => r.violations.map((v) => v.ruleName));
    expect(rules).toEqual(expect.arrayContaining(['AwsSolutions-S1', 'AwsSolutions-S10']));
    rmSync(app.outdir, { recursive: true, force: true });
  });
});

// One synthesis of a non-default configuration, with placeholder image/code to keep it cheap.
let outdir: string;
let t: Template;
let synthError: unknown;

beforeAll(() => {
  outdir = mkdtempSync(path.join(tmpdir(), 'edgetune-cdk-variant-'));
  const ctx: Record<string, unknown> = {
    spot: 'true',
    removalPolicy: 'destroy',
    functionUrl: 'true',
    apiKeysSecretArn: SECRET,
    apiConcurrency: '25',
    sweepMinutes: '30',
    alarmTopicArn: TOPIC,
    lambdaMemory: '3008',
    trainVcpus: '8',
    trainMemoryMiB: '30000',
    maxVcpus: '32',
    trainTimeoutMinutes: '60',
    trainArgs: '--epochs 5',
    baseWeights: 's3://my-models/models/_base/mobilenet_v2/model.json',
    modelName: 'cats',
    quietSeconds: '300',
    corsOrigins: 'https://a.example, https://b.example',
  };
  const app = new App({ outdir });
  const stack = new EdgetuneStack(app, 'Variant', {
    config: parseInfraConfig((k) => ctx[k]),
    apiCode: lambda.Code.fromInline('export const handler = async () => ({ statusCode: 200 });'),
    triggerCode: lambda.Code.fromInline('export const handler = async () => ({ batchItemFailures: [] });'),
    trainingImage: ecs.ContainerImage.fromRegistry('public.ecr.aws/example/edgetune-train:test'),
    env: { account: '123456789012', region: 'eu-west-1' },
  });
  ({ t, synthError } = synthWithNag(app, stack, outdir));
}, 300_000);

afterAll(() => {
  if (outdir) rmSync(outdir, { recursive: true, force: true });
});

describe('variant: spot, destroy, function URL, API keys, alarm topic, bigger jobs', () => {
  it('has no cdk-nag errors either', () => {
    expect(validationErrors(outdir)).toEqual([]);
    expect(synthError).toBeUndefined();
  });

  it('Spot compute environment with the capacity-optimised strategy and the larger limits', () => {
    t.hasResourceProperties('AWS::Batch::ComputeEnvironment', {
      ComputeResources: Match.objectLike({
        Type: 'SPOT',
        AllocationStrategy: 'SPOT_PRICE_CAPACITY_OPTIMIZED',
        InstanceTypes: ['g4dn', 'g5'],
        MinvCpus: 0,
        MaxvCpus: 32,
      }),
    });
    t.hasResourceProperties('AWS::Batch::JobDefinition', {
      ContainerProperties: Match.objectLike({
        Image: 'public.ecr.aws/example/edgetune-train:test',
        ResourceRequirements: Match.arrayEquals([
          { Type: 'MEMORY', Value: '30000' },
          { Type: 'VCPU', Value: '8' },
          { Type: 'GPU', Value: '1' },
        ]),
        Environment: Match.arrayWith([
          { Name: 'EDGETUNE_TRAIN_ARGS', Value: '--epochs 5' },
          { Name: 'EDGETUNE_BASE_WEIGHTS', Value: 's3://my-models/models/_base/mobilenet_v2/model.json' },
        ]),
      }),
      Timeout: { AttemptDurationSeconds: 3600 },
    });
  });

  it('destroy policy: buckets are deleted with their objects', () => {
    for (const b of Object.values(t.findResources('AWS::S3::Bucket'))) expect(b.DeletionPolicy).toBe('Delete');
    t.resourceCountIs('Custom::S3AutoDeleteObjects', 3);
  });

  it('Lambda memory, model name, API-key secret access, function URL with CORS', () => {
    t.hasResourceProperties('AWS::Lambda::Function', {
      MemorySize: 3008,
      Environment: {
        Variables: Match.objectLike({
          API_KEYS_SECRET_ARN: SECRET,
          MODEL_URI: { 'Fn::Join': ['', ['s3://', Match.anyValue(), '/models/cats']] },
        }),
      },
    });
    t.hasResourceProperties('AWS::IAM::Policy', {
      PolicyDocument: { Statement: Match.arrayWith([Match.objectLike({ Action: 'secretsmanager:GetSecretValue', Resource: SECRET })]) },
    });
    t.hasResourceProperties('AWS::Lambda::Url', {
      AuthType: 'NONE',
      Cors: Match.objectLike({ AllowOrigins: ['https://a.example', 'https://b.example'] }),
    });
    t.hasResourceProperties('AWS::ApiGatewayV2::Api', {
      CorsConfiguration: Match.objectLike({ AllowOrigins: ['https://a.example', 'https://b.example'] }),
    });
    expect(t.findOutputs('FunctionUrl')).toHaveProperty('FunctionUrl');
  });

  it('quiet period and alarm action follow the context', () => {
    t.hasResourceProperties('AWS::Lambda::Function', {
      ReservedConcurrentExecutions: Match.absent(),
      Environment: { Variables: Match.objectLike({ QUIET_SECONDS: '300' }) },
    });
    t.hasResourceProperties('AWS::CloudWatch::Alarm', { AlarmActions: [TOPIC] });
    t.hasResourceProperties('AWS::Events::Rule', { ScheduleExpression: 'rate(30 minutes)' });
  });

  it('apiKeysSecretArn: the given secret is used and none is created; apiConcurrency reserves the API concurrency', () => {
    t.resourceCountIs('AWS::SecretsManager::Secret', 0);
    t.hasResourceProperties('AWS::Lambda::Function', {
      ReservedConcurrentExecutions: 25,
      Environment: { Variables: Match.objectLike({ API_KEYS_SECRET_ARN: SECRET }) },
    });
  });
});

describe('variant: publicApi=true', () => {
  it('creates no secret, passes no key setting to the API, and stays cdk-nag clean', () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'edgetune-cdk-public-'));
    try {
      const app = new App({ outdir: dir });
      const stack = new EdgetuneStack(app, 'Public', {
        config: parseInfraConfig((k) => (k === 'publicApi' ? 'true' : undefined)),
        apiCode: lambda.Code.fromInline('export const handler = async () => ({ statusCode: 200 });'),
        triggerCode: lambda.Code.fromInline('export const handler = async () => ({ batchItemFailures: [] });'),
        trainingImage: ecs.ContainerImage.fromRegistry('public.ecr.aws/example/edgetune-train:test'),
        env: { account: '123456789012', region: 'eu-west-1' },
      });
      const { t: pt, synthError: err } = synthWithNag(app, stack, dir);
      expect(err).toBeUndefined();
      expect(validationErrors(dir)).toEqual([]);
      pt.resourceCountIs('AWS::SecretsManager::Secret', 0);
      for (const f of Object.values(pt.findResources('AWS::Lambda::Function'))) {
        expect(f.Properties.Environment?.Variables?.API_KEYS_SECRET_ARN).toBeUndefined();
        expect(f.Properties.ReservedConcurrentExecutions).toBeUndefined();
      }
      expect(pt.findOutputs('ApiKeySecretArn')).toEqual({});
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  }, 120_000);
});
