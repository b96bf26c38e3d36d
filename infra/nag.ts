import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
// cdk-nag 3 reports through CDK's policy-validation plugins; findings are acknowledged with Validations.of().
import { type CfnElement, Stack, Validations } from 'aws-cdk-lib';
import cdkNag from 'cdk-nag';
import type { IConstruct } from 'constructs';

export const { AwsSolutionsChecks } = cdkNag;

export interface Ack {
  id: string;
  reason: string;
}

/** Acknowledges cdk-nag findings on a construct and everything below it, each with its written reason. */
export function acknowledge(scope: IConstruct, acks: Ack[]): void {
  Validations.of(scope).acknowledge(...acks);
}

/** How cdk-nag prints an ARN reference to a resource in its IAM5 findings: `<LogicalId.Arn>`. */
export function arnRef(resource: IConstruct): string {
  const cfn = (resource.node.defaultChild ?? resource) as CfnElement;
  return `<${Stack.of(resource).resolve(cfn.logicalId)}.Arn>`;
}

interface ValidationReport {
  pluginReports: Array<{
    violations: Array<{ ruleName: string; severity: string; violatingConstructs: Array<{ constructPath: string }> }>;
  }>;
}

/** Unacknowledged policy-validation errors (cdk-nag included) of a synthesized assembly, as `rule @ paths`. */
export function validationErrors(assemblyDir: string): string[] {
  const file = path.join(assemblyDir, 'validation-report.json');
  if (!existsSync(file)) return [];
  const report = JSON.parse(readFileSync(file, 'utf8')) as ValidationReport;
  return report.pluginReports.flatMap((r) =>
    r.violations
      .filter((v) => v.severity === 'error')
      .map((v) => `${v.ruleName} @ ${v.violatingConstructs.map((c) => c.constructPath).join(', ')}`),
  );
}
