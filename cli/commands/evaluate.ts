import type { Command } from 'commander';
import { evaluateModel, formatEvaluation } from '../../training/evaluate.js';
import { run } from './options.js';

export function register(program: Command): void {
  program
    .command('evaluate')
    .description("Evaluate a saved model on a folder whose class subfolders carry the model's class names.")
    .argument('<model>', 'model folder, or s3://bucket/models/<name>[/<version>]')
    .argument('<data>', 'folder with one subfolder per class')
    .option('--json', 'print JSON')
    .action((modelUri: string, data: string, o: { json?: boolean }) =>
      run(async () => {
        const e = await evaluateModel(modelUri, data);
        const classes = e.metrics.perClass.map((c) => c.label);
        process.stdout.write(o.json ? `${JSON.stringify(e, null, 2)}\n` : `${formatEvaluation(e, classes)}\n`);
      }),
    );
}
