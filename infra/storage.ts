import { Duration, RemovalPolicy } from 'aws-cdk-lib';
import * as s3 from 'aws-cdk-lib/aws-s3';
import { Construct } from 'constructs';
import { S3_LAYOUT } from '../core/s3/layout.js';
import { acknowledge } from './nag.js';

/** Key layout shared by training, serving and the trigger (core/s3/layout.ts). */
export const PREFIX = S3_LAYOUT;

export interface StorageProps {
  removalPolicy: 'retain' | 'destroy';
  /** Non-current object versions are deleted after this many days. Default 30. */
  noncurrentDays?: number;
}

/**
 * The data bucket (datasets, uploaded by users; EventBridge notifications on) and the model
 * bucket (published models and training checkpoints), plus a bucket for their access logs.
 */
export class Storage extends Construct {
  readonly dataBucket: s3.Bucket;
  readonly modelBucket: s3.Bucket;
  readonly logBucket: s3.Bucket;

  constructor(scope: Construct, id: string, props: StorageProps) {
    super(scope, id);
    const destroy = props.removalPolicy === 'destroy';
    const removal = {
      removalPolicy: destroy ? RemovalPolicy.DESTROY : RemovalPolicy.RETAIN,
      autoDeleteObjects: destroy,
    };
    const secure = {
      encryption: s3.BucketEncryption.S3_MANAGED,
      blockPublicAccess: s3.BlockPublicAccess.BLOCK_ALL,
      enforceSSL: true,
      minimumTLSVersion: 1.2,
    };

    this.logBucket = new s3.Bucket(this, 'LogBucket', {
      ...secure,
      ...removal,
      // CloudFront standard logging writes with ACLs; S3 server access logging uses the bucket policy.
      objectOwnership: s3.ObjectOwnership.BUCKET_OWNER_PREFERRED,
      lifecycleRules: [{ id: 'expire-logs', expiration: Duration.days(90) }],
    });
    acknowledge(this.logBucket, [
      { id: 'AwsSolutions-S1', reason: 'This is the access-log destination; logging it into itself would loop.' },
    ]);

    const noncurrent = Duration.days(props.noncurrentDays ?? 30);
    const versionedLifecycle: s3.LifecycleRule[] = [
      { id: 'expire-noncurrent', noncurrentVersionExpiration: noncurrent, expiredObjectDeleteMarker: true },
      { id: 'abort-multipart', abortIncompleteMultipartUploadAfter: Duration.days(7) },
    ];

    this.dataBucket = new s3.Bucket(this, 'DataBucket', {
      ...secure,
      ...removal,
      versioned: true,
      eventBridgeEnabled: true,
      serverAccessLogsBucket: this.logBucket,
      serverAccessLogsPrefix: 's3/data/',
      lifecycleRules: versionedLifecycle,
    });

    this.modelBucket = new s3.Bucket(this, 'ModelBucket', {
      ...secure,
      ...removal,
      versioned: true,
      serverAccessLogsBucket: this.logBucket,
      serverAccessLogsPrefix: 's3/models/',
      lifecycleRules: [
        ...versionedLifecycle,
        // Checkpoints only matter while a job may still be retried.
        {
          id: 'expire-checkpoints',
          prefix: PREFIX.checkpoints,
          expiration: Duration.days(14),
          noncurrentVersionExpiration: Duration.days(1),
        },
      ],
    });
  }
}
