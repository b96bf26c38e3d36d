import { execSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import path from 'node:path';
import { App, Validations } from 'aws-cdk-lib';
import * as lambda from 'aws-cdk-lib/aws-lambda';
import { parseInfraConfig } from './config.js';
import { AwsSolutionsChecks } from './nag.js';
import { EdgetuneStack } from './stack.js';
import { REPO_ROOT } from './training.js';

const app = new App();
const config = parseInfraConfig((key) => app.node.tryGetContext(key));

const apiDir = path.resolve(REPO_ROOT, config.lambdaCodePath);
if (!existsSync(apiDir) && config.lambdaCodePath === 'dist/functions/lambda') {
  // Fresh clone: build the API bundle (esbuild, local, offline) so a bare `npx cdk synth` works too.
  console.error('edgetune: dist/functions/lambda missing, running `npm run build:functions`');
  execSync('npm run build:functions', { cwd: REPO_ROOT, stdio: ['ignore', process.stderr, process.stderr] });
}
if (!existsSync(apiDir)) {
  throw new Error(`API bundle not found at ${apiDir}: run \`npm run build:functions\` first (\`npm run synth\` does both).`);
}

new EdgetuneStack(app, app.node.tryGetContext('stackName') ?? 'Edgetune', {
  config,
  apiCode: lambda.Code.fromAsset(apiDir),
  env: { account: process.env.CDK_DEFAULT_ACCOUNT, region: process.env.CDK_DEFAULT_REGION },
  description: 'edgetune: MobileNetV2 fine-tuning on AWS Batch GPUs, models in S3, classify API on Lambda + CloudFront',
});

Validations.of(app).addPlugins(new AwsSolutionsChecks(app, { verbose: true }));
