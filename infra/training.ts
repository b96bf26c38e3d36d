import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { type Duration, RemovalPolicy, Size, Stack } from 'aws-cdk-lib';
import * as batch from 'aws-cdk-lib/aws-batch';
import * as ec2 from 'aws-cdk-lib/aws-ec2';
import { Platform } from 'aws-cdk-lib/aws-ecr-assets';
import * as ecs from 'aws-cdk-lib/aws-ecs';
import * as iam from 'aws-cdk-lib/aws-iam';
import * as logs from 'aws-cdk-lib/aws-logs';
import type * as s3 from 'aws-cdk-lib/aws-s3';
import { Construct } from 'constructs';
import { VERSION_GLOB } from '../core/versioning.js';
import { acknowledge, arnRef } from './nag.js';
import { PREFIX } from './storage.js';

/** GPU families the compute environment may launch; tfjs-node-gpu 4.x runs on their T4 / A10G GPUs. */
export const GPU_INSTANCE_CLASSES = [ec2.InstanceClass.G4DN, ec2.InstanceClass.G5];

/**
 * Root volume of a GPU host (GiB). The run's disk cache (decoded images and boundary views past
 * the memory budget, training/cache-budget.ts) needs at most about 0.56 GB per 1,000 photos at 224
 * with alpha 1.0 (README, "Data at any scale"), next to the ~10 GB image; 100 GiB covers about 150,000 photos.
 */
export const TRAIN_DISK_GIB = 100;
/** Where the job's disk cache lives on the host, and in the container (TMPDIR). */
export const CACHE_HOST_PATH = '/var/lib/edgetune-cache';
export const CACHE_CONTAINER_PATH = '/cache';

export const REPO_ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');

export interface TrainingProps {
  dataBucket: s3.IBucket;
  modelBucket: s3.IBucket;
  /** S3 access logs / VPC flow logs destination. */
  logBucket: s3.IBucket;
  spot: boolean;
  maxVcpus: number;
  vcpus: number;
  memoryMiB: number;
  timeout: Duration;
  attempts: number;
  trainArgs?: string;
  baseWeights?: string;
  /** Root volume of each GPU host in GiB (default TRAIN_DISK_GIB): the job's disk cache lives there. */
  diskGiB?: number;
  /** The training image; default: built from training/Dockerfile at deploy time (`cdk synth` never builds it). */
  image?: ecs.ContainerImage;
}

/**
 * GPU training on AWS Batch: a NAT-less VPC (public subnets + S3 gateway endpoint), a managed EC2
 * compute environment that scales to zero, a job queue and the `edgetune train` job definition.
 */
export class Training extends Construct {
  readonly vpc: ec2.Vpc;
  readonly computeEnvironment: batch.ManagedEc2EcsComputeEnvironment;
  readonly jobQueue: batch.JobQueue;
  readonly jobDefinition: batch.EcsJobDefinition;
  readonly jobRole: iam.Role;
  readonly logGroup: logs.LogGroup;

  constructor(scope: Construct, id: string, props: TrainingProps) {
    super(scope, id);

    // No NAT gateway (≈$33/month each): hosts get public IPs for ECR/CloudWatch, S3 goes through the free gateway endpoint.
    this.vpc = new ec2.Vpc(this, 'Vpc', {
      maxAzs: 2,
      natGateways: 0,
      subnetConfiguration: [{ name: 'public', subnetType: ec2.SubnetType.PUBLIC, cidrMask: 24 }],
      gatewayEndpoints: { S3: { service: ec2.GatewayVpcEndpointAwsService.S3 } },
      flowLogs: {
        toS3: { destination: ec2.FlowLogDestination.toS3(props.logBucket, 'vpc-flow-logs/'), trafficType: ec2.FlowLogTrafficType.ALL },
      },
    });
    const securityGroup = new ec2.SecurityGroup(this, 'HostSecurityGroup', {
      vpc: this.vpc,
      description: 'Batch GPU hosts: no inbound, outbound for ECR, CloudWatch Logs and S3',
      allowAllOutbound: true,
    });

    // A bigger, encrypted root volume for the disk cache; IMDSv2 only.
    const launchTemplate = new ec2.LaunchTemplate(this, 'HostTemplate', {
      requireImdsv2: true,
      blockDevices: [
        {
          deviceName: '/dev/xvda',
          volume: ec2.BlockDeviceVolume.ebs(props.diskGiB ?? TRAIN_DISK_GIB, {
            volumeType: ec2.EbsDeviceVolumeType.GP3,
            encrypted: true,
            deleteOnTermination: true,
          }),
        },
      ],
    });

    this.computeEnvironment = new batch.ManagedEc2EcsComputeEnvironment(this, 'GpuCompute', {
      launchTemplate,
      vpc: this.vpc,
      vpcSubnets: { subnetType: ec2.SubnetType.PUBLIC },
      securityGroups: [securityGroup],
      instanceClasses: GPU_INSTANCE_CLASSES,
      useOptimalInstanceClasses: false,
      minvCpus: 0,
      maxvCpus: props.maxVcpus,
      spot: props.spot,
      allocationStrategy: props.spot
        ? batch.AllocationStrategy.SPOT_PRICE_CAPACITY_OPTIMIZED
        : batch.AllocationStrategy.BEST_FIT_PROGRESSIVE,
      images: [{ imageType: batch.EcsMachineImageType.ECS_AL2_NVIDIA }],
      updateToLatestImageVersion: true,
      replaceComputeEnvironment: false,
    });

    this.jobQueue = new batch.JobQueue(this, 'JobQueue', {
      computeEnvironments: [{ computeEnvironment: this.computeEnvironment, order: 1 }],
      priority: 1,
    });

    this.jobRole = new iam.Role(this, 'JobRole', {
      assumedBy: new iam.ServicePrincipal('ecs-tasks.amazonaws.com'),
      description: 'edgetune training job: reads datasets/*, publishes models/*, keeps checkpoints/*',
    });
    grantTrainingAccess(this.jobRole, props.dataBucket, props.modelBucket);

    this.logGroup = new logs.LogGroup(this, 'Logs', { retention: logs.RetentionDays.ONE_MONTH, removalPolicy: RemovalPolicy.DESTROY });

    const image = props.image ?? ecs.ContainerImage.fromAsset(REPO_ROOT, { file: 'training/Dockerfile', platform: Platform.LINUX_AMD64 });

    const environment: Record<string, string> = {
      DATA_BUCKET: props.dataBucket.bucketName,
      MODEL_BUCKET: props.modelBucket.bucketName,
      // The trigger overrides DATASET per job; this default makes a hand-submitted job fail loudly.
      DATASET: '',
      EDGETUNE_TRAIN_ARGS: props.trainArgs ?? '',
      AWS_REGION: Stack.of(this).region,
      // The disk cache (os.tmpdir()) on the host's big root volume, not in the container's layer.
      TMPDIR: CACHE_CONTAINER_PATH,
    };
    if (props.baseWeights) environment.EDGETUNE_BASE_WEIGHTS = props.baseWeights;

    const container = new batch.EcsEc2ContainerDefinition(this, 'TrainContainer', {
      image,
      cpu: props.vcpus,
      memory: Size.mebibytes(props.memoryMiB),
      gpu: 1,
      jobRole: this.jobRole,
      environment,
      volumes: [batch.EcsVolume.host({ name: 'cache', hostPath: CACHE_HOST_PATH, containerPath: CACHE_CONTAINER_PATH })],
      logging: ecs.LogDriver.awsLogs({ streamPrefix: 'train', logGroup: this.logGroup }),
    });
    this.jobDefinition = new batch.EcsJobDefinition(this, 'TrainJob', {
      container,
      parameters: { dataset: '' },
      timeout: props.timeout,
      retryAttempts: props.attempts,
      // Only a reclaimed Spot host is retried (the job resumes from its checkpoint); anything else fails the job.
      retryStrategies: [
        batch.RetryStrategy.of(batch.Action.RETRY, batch.Reason.SPOT_INSTANCE_RECLAIMED),
        batch.RetryStrategy.of(batch.Action.EXIT, batch.Reason.custom({ onReason: '*' })),
      ],
      propagateTags: true,
    });

    acknowledge(this.computeEnvironment, [
      {
        id: 'AwsSolutions-IAM4[Policy::arn:<AWS::Partition>:iam::aws:policy/service-role/AmazonEC2ContainerServiceforEC2Role]',
        reason:
          'The Batch ECS instance role needs the AWS-managed AmazonEC2ContainerServiceforEC2Role so the ECS agent on the GPU hosts can register and pull images.',
      },
    ]);
    acknowledge(container.executionRole, [
      {
        id: 'AwsSolutions-IAM5[Resource::*]',
        reason:
          'The execution role needs ecr:GetAuthorizationToken, which has no resource-level permissions; image pulls and log writes are scoped to the asset repository and the job log group.',
      },
    ]);
  }
}

/** The job role's S3 access: read datasets, publish (and read, for the promotion gate) models, and keep checkpoints. */
export function grantTrainingAccess(role: iam.IRole, dataBucket: s3.IBucket, modelBucket: s3.IBucket): void {
  role.addToPrincipalPolicy(
    new iam.PolicyStatement({
      sid: 'ReadDatasets',
      actions: ['s3:GetObject'],
      resources: [dataBucket.arnForObjects(`${PREFIX.datasets}*`)],
    }),
  );
  role.addToPrincipalPolicy(
    new iam.PolicyStatement({
      sid: 'ListDatasets',
      actions: ['s3:ListBucket'],
      resources: [dataBucket.bucketArn],
      conditions: { StringLike: { 's3:prefix': [`${PREFIX.datasets}*`] } },
    }),
  );
  role.addToPrincipalPolicy(
    new iam.PolicyStatement({
      sid: 'PublishModels',
      actions: ['s3:GetObject', 's3:PutObject'],
      resources: [modelBucket.arnForObjects(`${PREFIX.models}*`)],
    }),
  );
  // Exactly the delete publishing needs: the files of a version it uploaded and then failed to verify.
  // Only keys inside a version folder match, so current.json (the live pointer) can never be deleted.
  role.addToPrincipalPolicy(
    new iam.PolicyStatement({
      sid: 'DeleteUnverifiedVersions',
      actions: ['s3:DeleteObject'],
      resources: [modelBucket.arnForObjects(`${PREFIX.models}*/${VERSION_GLOB}/*`)],
    }),
  );
  role.addToPrincipalPolicy(
    new iam.PolicyStatement({
      sid: 'Checkpoints',
      actions: ['s3:GetObject', 's3:PutObject', 's3:DeleteObject'],
      resources: [modelBucket.arnForObjects(`${PREFIX.checkpoints}*`)],
    }),
  );
  role.addToPrincipalPolicy(
    new iam.PolicyStatement({
      sid: 'ListModelsAndCheckpoints',
      actions: ['s3:ListBucket'],
      resources: [modelBucket.bucketArn],
      conditions: { StringLike: { 's3:prefix': [`${PREFIX.models}*`, `${PREFIX.checkpoints}*`] } },
    }),
  );
  const reason =
    'Object wildcards are scoped to one key prefix each (datasets/*, models/*, checkpoints/*): the job reads any file of a dataset and writes model versions and checkpoints whose keys are not known in advance.';
  acknowledge(role, [
    { id: `AwsSolutions-IAM5[Resource::${arnRef(dataBucket)}/${PREFIX.datasets}*]`, reason },
    { id: `AwsSolutions-IAM5[Resource::${arnRef(modelBucket)}/${PREFIX.models}*]`, reason },
    { id: `AwsSolutions-IAM5[Resource::${arnRef(modelBucket)}/${PREFIX.checkpoints}*]`, reason },
    {
      id: `AwsSolutions-IAM5[Resource::${arnRef(modelBucket)}/${PREFIX.models}*/${VERSION_GLOB}/*]`,
      reason:
        'Delete is limited to the files inside version folders (models/<name>/<version>/...), never current.json; publishing removes a version it uploaded only when that version failed verification.',
    },
  ]);
}
