import type { Command } from 'commander';
import { ensureS3 } from '../../core/s3/client.js';
import { DEFAULT_BUCKET } from '../../core/s3/embedded.js';
import { watchUploads } from '../local-system.js';
import { num, run } from './options.js';

export function register(program: Command): void {
  program
    .command('watch')
    .description(
      'Retrain when a dataset is uploaded under s3://<bucket>/datasets/<name>/: the same debounced trigger as on AWS, ' +
        'with the training job in a local child process instead of AWS Batch. Uses the embedded S3 unless EDGETUNE_S3_ENDPOINT is set.',
    )
    .option('--bucket <name>', 'bucket to watch', DEFAULT_BUCKET)
    .option('--quiet <seconds>', 'a dataset is settled after this long without changes', num('quiet'), 120)
    .option('--s3-port <port>', 'port of the embedded S3', num('port'))
    .argument('[train-flags...]', "extra flags for each training run, after '--' (e.g. -- --image-size 160)")
    .action((trainFlags: string[], o: { bucket: string; quiet: number; s3Port?: number }) =>
      run(async () => {
        const log = (line: string) => process.stderr.write(`edgetune watch: ${line.replace(/^edgetune: /, '')}\n`);
        const s3 = await ensureS3({ log, port: o.s3Port });
        const w = watchUploads(s3, { bucket: o.bucket, quietMs: o.quiet * 1000, extraArgs: trainFlags, log });
        log(`watching s3://${o.bucket}/datasets/ (quiet period ${o.quiet} s; put datasets/<name>/_RETRAIN to train at once)`);
        await new Promise<void>((resolve) => {
          const stop = () => resolve();
          process.once('SIGINT', stop);
          process.once('SIGTERM', stop);
        });
        await w.close();
        await s3.close();
      }),
    );
}
