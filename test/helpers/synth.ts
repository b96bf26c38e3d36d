import { readFileSync } from 'node:fs';
import path from 'node:path';
import { type App, type Stack, Validations } from 'aws-cdk-lib';
import { Template } from 'aws-cdk-lib/assertions';
import { AwsSolutionsChecks } from '../../infra/nag.js';

/**
 * Synthesizes `stack` with cdk-nag's AwsSolutions pack on. A policy violation fails synthesis but
 * the template is still written, so the error is returned beside the template for a test to assert.
 */
export function synthWithNag(app: App, stack: Stack, outdir: string): { t: Template; synthError: unknown } {
  Validations.of(app).addPlugins(new AwsSolutionsChecks(app));
  try {
    return { t: Template.fromStack(stack), synthError: undefined };
  } catch (err) {
    return {
      t: Template.fromJSON(JSON.parse(readFileSync(path.join(outdir, `${stack.stackName}.template.json`), 'utf8'))),
      synthError: err,
    };
  }
}
