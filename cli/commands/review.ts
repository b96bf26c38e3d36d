import { writeFile } from 'node:fs/promises';
import { type Command, InvalidArgumentError } from 'commander';
import { initBackend } from '../../core/backend.js';
import { loadModel } from '../../core/model-loader.js';
import { describeSummary, reviewCsv, reviewFolder } from '../../training/review.js';
import { run } from './options.js';

const threshold = (v: string): number => {
  const n = Number(v);
  if (v.trim() === '' || !Number.isFinite(n) || n < 0 || n > 2) throw new InvalidArgumentError(`must be a number from 0 to 2; got '${v}'`);
  return n;
};

export function register(program: Command): void {
  program
    .command('review')
    .description(
      'List the photos of a folder the model gets wrong, calls unknown, or finds near-duplicated across folders, as a label CSV (path,label,...) to correct and feed back with --labels.',
    )
    .argument('<model>', 'model folder, or s3://bucket/models/<name>[/<version>]')
    .requiredOption('--data <folder>', 'photos in class subfolders (a folder that is not a model class counts as outside)')
    .option('--out <file>', 'CSV to write', 'review.csv')
    .option('--threshold <d>', "open-set distance above which a photo is unknown (default: the model's)", threshold)
    .option('--json', 'print the summary as JSON')
    .action((modelUri: string, o: { data: string; out: string; threshold?: number; json?: boolean }) =>
      run(async () => {
        await initBackend();
        const { model, manifest } = await loadModel(modelUri);
        try {
          const { rows, summary } = await reviewFolder(model, manifest, o.data, { threshold: o.threshold });
          await writeFile(o.out, reviewCsv(rows));
          process.stdout.write(
            o.json ? `${JSON.stringify({ ...summary, out: o.out })}\n` : `${describeSummary(summary)}\nwrote ${o.out}\n`,
          );
        } finally {
          model.dispose();
        }
      }),
    );
}
