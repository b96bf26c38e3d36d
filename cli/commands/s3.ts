import type { Command } from 'commander';
import { ACCESS_KEY_ENV, DEFAULT_BUCKET, DEFAULT_S3_DIR, SECRET_KEY_ENV, startS3rver } from '../../core/s3/embedded.js';
import { int, run } from './options.js';

export function register(program: Command): void {
  program
    .command('s3')
    .description(
      'Run the embedded S3 server (s3rver behind a SigV4-verifying guard) in the foreground; objects are plain files under --dir.',
    )
    .option('--port <n>', 'TCP port', int('--port'), 4569)
    .option('--address <host>', 'loopback address to listen on (127.0.0.1, ::1 or localhost)', '127.0.0.1')
    .option('--dir <path>', 'where objects are stored', DEFAULT_S3_DIR)
    .option('--bucket <name...>', 'buckets to create when missing', [DEFAULT_BUCKET])
    .addHelpText(
      'after',
      '\nOther edgetune commands start this server in-process by themselves when EDGETUNE_S3_ENDPOINT is unset and\n' +
        'no AWS credentials are in the environment. Run it here to share one server between processes, and export\n' +
        `the endpoint and the key pair it prints (every request must be signed with it; set ${ACCESS_KEY_ENV} and\n` +
        `${SECRET_KEY_ENV} beforehand to choose the pair, otherwise a random one is made for this run).\n`,
    )
    .action((opts: { port: number; address: string; dir: string; bucket: string[] }) =>
      run(async () => {
        const s3 = await startS3rver({ port: opts.port, address: opts.address, dir: opts.dir, buckets: opts.bucket });
        console.log(
          `edgetune: S3 (s3rver) listening on ${s3.endpoint}, data in ${s3.dir}, buckets: ${opts.bucket.map((b) => `s3://${b}`).join(', ')}`,
        );
        console.log(`  export EDGETUNE_S3_ENDPOINT=${s3.endpoint}`);
        console.log(`  export ${ACCESS_KEY_ENV}=${s3.credentials.accessKeyId}`);
        console.log(`  export ${SECRET_KEY_ENV}=${s3.credentials.secretAccessKey}`);
        await new Promise<void>((resolve) => {
          const stop = () => resolve();
          process.once('SIGINT', stop);
          process.once('SIGTERM', stop);
        });
        await s3.close();
        console.log('edgetune: S3 stopped');
      }),
    );
}
