import { Duration, RemovalPolicy, Stack } from 'aws-cdk-lib';
import * as apigw from 'aws-cdk-lib/aws-apigatewayv2';
import { HttpLambdaIntegration } from 'aws-cdk-lib/aws-apigatewayv2-integrations';
import * as cloudfront from 'aws-cdk-lib/aws-cloudfront';
import * as origins from 'aws-cdk-lib/aws-cloudfront-origins';
import * as iam from 'aws-cdk-lib/aws-iam';
import * as lambda from 'aws-cdk-lib/aws-lambda';
import * as logs from 'aws-cdk-lib/aws-logs';
import type * as s3 from 'aws-cdk-lib/aws-s3';
import * as secretsmanager from 'aws-cdk-lib/aws-secretsmanager';
import { Construct } from 'constructs';
import { functionRoleAndLogs } from './function-role.js';
import { LAMBDA_RUNTIME } from './lambda-runtime.js';
import { acknowledge, arnRef } from './nag.js';
import { PREFIX } from './storage.js';

export interface ServingProps {
  modelBucket: s3.IBucket;
  /** CloudFront standard logs destination. */
  logBucket: s3.IBucket;
  /** The API bundle (`npm run build:functions` -> dist/functions/lambda); tests pass a placeholder. */
  code: lambda.Code;
  handler?: string;
  modelName: string;
  memoryMiB: number;
  refreshSeconds: number;
  throttle: { rate: number; burst: number };
  corsOrigins: string[];
  functionUrl: boolean;
  /**
   * API keys: `{ secretArn }` uses that Secrets Manager secret, `'create'` makes one in the stack
   * (a random key, read it with `aws secretsmanager get-secret-value`), `'public'` serves without keys.
   */
  apiKeys: { secretArn: string } | 'create' | 'public';
  /** Reserved concurrency of the API function (caps what an outsider can make it cost); none by default. */
  reservedConcurrency?: number;
}

/**
 * The classify API: a Node 20 arm64 Lambda reading models/<name> from the model bucket, behind an
 * HTTP API (throttled, CORS) and a CloudFront distribution that caches the page and /v1/model only.
 */
export class Serving extends Construct {
  readonly fn: lambda.Function;
  readonly role: iam.Role;
  readonly httpApi: apigw.HttpApi;
  readonly stage: apigw.HttpStage;
  readonly distribution: cloudfront.Distribution;
  readonly functionUrl?: lambda.FunctionUrl;
  /** The API key secret, when the stack created it. */
  readonly apiKeySecret?: secretsmanager.Secret;

  constructor(scope: Construct, id: string, props: ServingProps) {
    super(scope, id);
    const { role, logGroup } = functionRoleAndLogs(this, 'edgetune classify API: reads models/* only');
    this.role = role;
    grantModelRead(this.role, props.modelBucket);

    const environment: Record<string, string> = {
      MODEL_URI: `s3://${props.modelBucket.bucketName}/${PREFIX.models}${props.modelName}`,
      MODEL_REFRESH_SECONDS: String(props.refreshSeconds),
      // CORS is answered by API Gateway / the function URL; the app must not add a second set of headers.
      CORS_ORIGINS: 'none',
      NODE_OPTIONS: '--enable-source-maps',
      // The bundle ships onnxruntime-node's linux-arm64 binary (scripts/build-functions.ts); a model
      // that does not convert or check out stays on tfjs WASM (functions/model-holder.ts).
      EDGETUNE_ENGINE: 'ort',
    };
    if (props.apiKeys === 'create') {
      this.apiKeySecret = new secretsmanager.Secret(this, 'ApiKeys', {
        description: 'edgetune classify API keys (one key, or a JSON array of keys / comma-separated); sent as Authorization: Bearer <key>',
        // One plain key; no commas or quotes so it parses as itself.
        generateSecretString: { passwordLength: 40, excludePunctuation: true, includeSpace: false },
        // The keys are useless without this stack's API: no reason to keep paying for the secret after `cdk destroy`.
        removalPolicy: RemovalPolicy.DESTROY,
      });
      acknowledge(this.apiKeySecret, [
        {
          id: 'AwsSolutions-SMG4',
          reason:
            'Rotation needs a rotation Lambda; API keys are rotated by putting a new value (the API re-reads the secret), see README "Deploy to AWS".',
        },
      ]);
    }
    const secretArn =
      props.apiKeys === 'create' ? this.apiKeySecret?.secretArn : props.apiKeys === 'public' ? undefined : props.apiKeys.secretArn;
    if (secretArn) {
      environment.API_KEYS_SECRET_ARN = secretArn;
      this.role.addToPrincipalPolicy(
        new iam.PolicyStatement({ sid: 'ApiKeys', actions: ['secretsmanager:GetSecretValue'], resources: [secretArn] }),
      );
    }

    this.fn = new lambda.Function(this, 'Function', {
      runtime: LAMBDA_RUNTIME,
      architecture: lambda.Architecture.ARM_64,
      memorySize: props.memoryMiB,
      timeout: Duration.seconds(29),
      handler: props.handler ?? 'index.handler',
      code: props.code,
      role: this.role,
      logGroup,
      environment,
      description: 'edgetune classify API (Hono)',
      // Not by default: reserved concurrency fails to deploy on new accounts whose concurrency quota is 10.
      ...(props.reservedConcurrency !== undefined ? { reservedConcurrentExecutions: props.reservedConcurrency } : {}),
    });

    const allowMethods = [apigw.CorsHttpMethod.GET, apigw.CorsHttpMethod.POST, apigw.CorsHttpMethod.OPTIONS];
    this.httpApi = new apigw.HttpApi(this, 'HttpApi', {
      description: 'edgetune classify API',
      createDefaultStage: false,
      corsPreflight: {
        allowOrigins: props.corsOrigins,
        allowMethods,
        allowHeaders: ['content-type', 'authorization'],
        maxAge: Duration.days(1),
      },
      defaultIntegration: new HttpLambdaIntegration('Lambda', this.fn),
    });
    const accessLogs = new logs.LogGroup(this, 'ApiAccessLogs', {
      retention: logs.RetentionDays.ONE_MONTH,
      removalPolicy: RemovalPolicy.DESTROY,
    });
    this.stage = new apigw.HttpStage(this, 'DefaultStage', {
      httpApi: this.httpApi,
      stageName: '$default',
      autoDeploy: true,
      throttle: { rateLimit: props.throttle.rate, burstLimit: props.throttle.burst },
      accessLogSettings: { destination: new apigw.LogGroupLogDestination(accessLogs) },
    });

    if (props.functionUrl) {
      this.functionUrl = this.fn.addFunctionUrl({
        authType: lambda.FunctionUrlAuthType.NONE,
        cors: {
          allowedOrigins: props.corsOrigins,
          allowedMethods: [lambda.HttpMethod.GET, lambda.HttpMethod.POST],
          allowedHeaders: ['content-type', 'authorization'],
        },
      });
    }

    const origin = new origins.HttpOrigin(`${this.httpApi.apiId}.execute-api.${Stack.of(this).region}.${Stack.of(this).urlSuffix}`, {
      protocolPolicy: cloudfront.OriginProtocolPolicy.HTTPS_ONLY,
      originSslProtocols: [cloudfront.OriginSslPolicy.TLS_V1_2],
    });
    // Short TTLs: the page and model metadata change when a new model is promoted. The origin's
    // Cache-Control wins within these bounds.
    const shortCache = new cloudfront.CachePolicy(this, 'ShortCache', {
      comment: 'edgetune page and model metadata',
      defaultTtl: Duration.minutes(1),
      minTtl: Duration.seconds(0),
      maxTtl: Duration.minutes(5),
      queryStringBehavior: cloudfront.CacheQueryStringBehavior.none(),
      // In the key so it reaches the origin: with API keys on, /v1/model needs the bearer token.
      headerBehavior: cloudfront.CacheHeaderBehavior.allowList('authorization'),
      cookieBehavior: cloudfront.CacheCookieBehavior.none(),
      enableAcceptEncodingGzip: true,
      enableAcceptEncodingBrotli: true,
    });
    const cached: cloudfront.BehaviorOptions = {
      origin,
      viewerProtocolPolicy: cloudfront.ViewerProtocolPolicy.REDIRECT_TO_HTTPS,
      allowedMethods: cloudfront.AllowedMethods.ALLOW_GET_HEAD_OPTIONS,
      cachePolicy: shortCache,
      compress: true,
    };
    this.distribution = new cloudfront.Distribution(this, 'Distribution', {
      comment: 'edgetune classify API',
      defaultBehavior: cached,
      additionalBehaviors: {
        '/v1/model': cached,
        '/v1/classify*': {
          origin,
          viewerProtocolPolicy: cloudfront.ViewerProtocolPolicy.HTTPS_ONLY,
          allowedMethods: cloudfront.AllowedMethods.ALLOW_ALL,
          cachePolicy: cloudfront.CachePolicy.CACHING_DISABLED,
          // Forward headers/query/body but not Host: API Gateway routes on its own host name.
          originRequestPolicy: cloudfront.OriginRequestPolicy.ALL_VIEWER_EXCEPT_HOST_HEADER,
        },
      },
      httpVersion: cloudfront.HttpVersion.HTTP2_AND_3,
      priceClass: cloudfront.PriceClass.PRICE_CLASS_100,
      enableLogging: true,
      logBucket: props.logBucket,
      logFilePrefix: 'cloudfront/',
    });

    acknowledge(this.httpApi, [
      {
        id: 'AwsSolutions-APIG4',
        reason:
          'Authorization is done by the app: API keys from Secrets Manager are required unless the stack was synthesised with -c publicApi=true; the stage is throttled either way.',
      },
    ]);
    acknowledge(this.distribution, [
      { id: 'AwsSolutions-CFR1', reason: 'A public image classifier: no geographic restriction is wanted.' },
      {
        id: 'AwsSolutions-CFR2',
        reason:
          'WAF costs at least ~$5/month idle; abuse is limited by API Gateway throttling. Attach a web ACL if the API is exposed widely.',
      },
      {
        id: 'AwsSolutions-CFR4',
        reason:
          'The distribution uses the default *.cloudfront.net certificate, which cannot enforce a minimum viewer TLS version; add a custom domain + ACM certificate to pin TLS 1.2.',
      },
    ]);
  }

  /** HTTPS URL of the CloudFront distribution. */
  get url(): string {
    return `https://${this.distribution.distributionDomainName}`;
  }
}

/** Read-only access to published models: objects under models/* and listing of that prefix. */
export function grantModelRead(role: iam.IRole, modelBucket: s3.IBucket): void {
  role.addToPrincipalPolicy(
    new iam.PolicyStatement({ sid: 'ReadModels', actions: ['s3:GetObject'], resources: [modelBucket.arnForObjects(`${PREFIX.models}*`)] }),
  );
  role.addToPrincipalPolicy(
    new iam.PolicyStatement({
      sid: 'ListModels',
      actions: ['s3:ListBucket'],
      resources: [modelBucket.bucketArn],
      conditions: { StringLike: { 's3:prefix': [`${PREFIX.models}*`] } },
    }),
  );
  acknowledge(role, [
    {
      id: `AwsSolutions-IAM5[Resource::${arnRef(modelBucket)}/${PREFIX.models}*]`,
      reason:
        'Read access is limited to the models/ prefix; model versions are created by training, so their keys are not known at deploy time.',
    },
  ]);
}
