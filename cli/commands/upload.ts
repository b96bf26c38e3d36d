import cliProgress from 'cli-progress';
import type { Command } from 'commander';
import { ensureS3 } from '../../core/s3/client.js';
import { uploadDataset } from '../../training/dataset-s3.js';
import { int, run } from './options.js';

export function register(program: Command): void {
  program
    .command('upload')
    .description('Upload a dataset folder (one subfolder per class) to S3, skipping files already there with the same content.')
    .argument('<dir>', 'local folder, e.g. ../shared/datasets/alpaca')
    .argument('<s3uri>', 'target prefix, e.g. s3://edgetune/datasets/alpaca/')
    .option('--concurrency <n>', 'parallel uploads', int('--concurrency'), 8)
    .action((dir: string, uri: string, opts: { concurrency: number }) =>
      run(async () => {
        const s3 = await ensureS3();
        const bar = process.stderr.isTTY
          ? new cliProgress.SingleBar(
              { format: 'upload [{bar}] {value}/{total} {file}', stream: process.stderr },
              cliProgress.Presets.shades_classic,
            )
          : undefined;
        try {
          const t0 = performance.now();
          let started = false;
          const r = await uploadDataset(dir, uri, {
            concurrency: opts.concurrency,
            onProgress: (p) => {
              if (bar && !started) {
                bar.start(p.total, 0, { file: '' });
                started = true;
              }
              bar?.update(p.done, { file: p.file });
            },
          });
          bar?.stop();
          const s = ((performance.now() - t0) / 1000).toFixed(1);
          console.log(`uploaded ${r.uploaded} file(s) (${r.bytes} bytes), ${r.skipped} unchanged skipped, to ${uri} in ${s} s`);
        } finally {
          bar?.stop();
          await s3.close();
        }
      }),
    );
}
