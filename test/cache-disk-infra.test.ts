import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { App, Duration, Stack } from 'aws-cdk-lib';
import { Match, type Template } from 'aws-cdk-lib/assertions';
import * as ecs from 'aws-cdk-lib/aws-ecs';
import * as s3 from 'aws-cdk-lib/aws-s3';
import { describe, expect, it } from 'vitest';
import { CACHE_CONTAINER_PATH, CACHE_HOST_PATH, TRAIN_DISK_GIB, Training } from '../infra/training.js';
import { synthWithNag } from './helpers/synth.js';

// The training job's disk for the run's cache (training/cache-budget.ts): a big encrypted root
// volume on every GPU host, mounted into the container as its TMPDIR.
function synth(diskGiB?: number): { t: Template; synthError: unknown } {
  const outdir = mkdtempSync(path.join(tmpdir(), 'cdk-cache-disk-'));
  const app = new App({ outdir });
  const stack = new Stack(app, 'CacheDisk', { env: { account: '123456789012', region: 'eu-west-1' } });
  const bucket = (id: string) =>
    new s3.Bucket(stack, id, {
      enforceSSL: true,
      encryption: s3.BucketEncryption.S3_MANAGED,
      blockPublicAccess: s3.BlockPublicAccess.BLOCK_ALL,
    });
  const logs = bucket('Logs');
  new Training(stack, 'Training', {
    dataBucket: bucket('Data'),
    modelBucket: bucket('Models'),
    logBucket: logs,
    spot: false,
    maxVcpus: 16,
    vcpus: 4,
    memoryMiB: 14_336,
    timeout: Duration.hours(3),
    attempts: 2,
    image: ecs.ContainerImage.fromRegistry('public.ecr.aws/example/edgetune:latest'),
    diskGiB,
  });
  return synthWithNag(app, stack, outdir);
}

describe('training job disk for the cache', () => {
  const { t } = synth();

  it('GPU hosts boot from a launch template: encrypted gp3 root volume of TRAIN_DISK_GIB, IMDSv2 only', () => {
    expect(TRAIN_DISK_GIB).toBeGreaterThanOrEqual(100);
    t.hasResourceProperties('AWS::EC2::LaunchTemplate', {
      LaunchTemplateData: Match.objectLike({
        BlockDeviceMappings: [
          { DeviceName: '/dev/xvda', Ebs: { VolumeSize: TRAIN_DISK_GIB, VolumeType: 'gp3', Encrypted: true, DeleteOnTermination: true } },
        ],
        MetadataOptions: Match.objectLike({ HttpTokens: 'required' }),
      }),
    });
    t.hasResourceProperties('AWS::Batch::ComputeEnvironment', {
      ComputeResources: Match.objectLike({ LaunchTemplate: Match.objectLike({ LaunchTemplateId: Match.anyValue() }) }),
    });
  });

  it('the job mounts the host folder as its TMPDIR, where the spill files go', () => {
    t.hasResourceProperties('AWS::Batch::JobDefinition', {
      ContainerProperties: Match.objectLike({
        Volumes: [{ Name: 'cache', Host: { SourcePath: CACHE_HOST_PATH } }],
        MountPoints: [{ SourceVolume: 'cache', ContainerPath: CACHE_CONTAINER_PATH }],
        Environment: Match.arrayWith([{ Name: 'TMPDIR', Value: CACHE_CONTAINER_PATH }]),
      }),
    });
  });

  it('the size is a prop, and cdk-nag has nothing against the template', () => {
    const big = synth(500);
    // Only this test's own bare buckets may be flagged (no access logs); nothing of the construct.
    const flagged = String((big.synthError as Error | undefined)?.message ?? '')
      .split('\n')
      .filter((l) => /^\s+CacheDisk\//.test(l));
    expect(flagged.filter((l) => !/CacheDisk\/(Logs|Data|Models)\/Resource/.test(l))).toEqual([]);
    big.t.hasResourceProperties('AWS::EC2::LaunchTemplate', {
      LaunchTemplateData: Match.objectLike({ BlockDeviceMappings: [Match.objectLike({ Ebs: Match.objectLike({ VolumeSize: 500 }) })] }),
    });
  });
});
