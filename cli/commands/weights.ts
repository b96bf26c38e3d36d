import type { Command } from 'commander';
import { initBackend } from '../../core/backend.js';
import { matchRawWeights, readRawWeights } from '../../core/weights/index.js';
import { formatWeightsReport, weightsReport } from '../../core/weights/inspect.js';
import { run } from './options.js';

export function register(program: Command): void {
  const weights = program.command('weights').description('Look into base weights files.');
  weights
    .command('inspect')
    .description(
      'What a weights file is and how edgetune would load it: format, layout, naming generation, alpha, whether the ImageNet top is present, tensor count, sha256. Run it first when a file will not load.',
    )
    .argument('<src>', 'tfjs model.json (path, file://, https://, s3://), Keras .h5 / .weights.h5, .keras archive, or nsfwjs')
    .option('--json', 'print JSON')
    .action((src: string, opts: { json?: boolean }) =>
      run(async () => {
        // tfjs shards are decoded with tf.io: a backend is needed (quietly).
        await initBackend('auto', () => {});
        const raw = await readRawWeights(src, (l) => process.stderr.write(`${l}\n`));
        let matched: ReturnType<typeof matchRawWeights> | Error;
        try {
          matched = matchRawWeights(raw);
        } catch (e) {
          matched = e as Error;
        }
        const report = weightsReport(raw, matched);
        process.stdout.write(opts.json ? `${JSON.stringify(report, null, 2)}\n` : `${formatWeightsReport(report)}\n`);
        if (report.error) process.exitCode = 1;
      }),
    );
}
