import * as lambda from 'aws-cdk-lib/aws-lambda';

/**
 * The Node.js major of every Lambda function the stack deploys. nodejs20.x was deprecated on
 * 2026-04-30 and Lambda refuses to create functions on it since 2026-08-31; nodejs24.x is supported
 * until 2028-04-30. test/api-bundles.slow.test.ts runs the bundles on this major (EDGETUNE_LAMBDA_NODE).
 */
export const LAMBDA_NODE_MAJOR = 24;

export const LAMBDA_RUNTIME = lambda.Runtime.NODEJS_24_X;
