import { type Command, Command as Program } from 'commander';
import { containerJob, jobArgs } from '../job-args.js';
import { run } from './options.js';

export function register(program: Command): void {
  program
    .command('job')
    .description("The training container's job (AWS Batch): `edgetune train` on the dataset its environment names.")
    .argument('[train-flags...]', 'more `edgetune train` flags, after those of $EDGETUNE_TRAIN_ARGS')
    .allowUnknownOption()
    .addHelpText(
      'after',
      '\nEnvironment: DATASET (set per job by the retrain trigger), DATA_BUCKET and MODEL_BUCKET (the job definition),\n' +
        'AWS_BATCH_JOB_ID (the checkpoint is per job, so a retry resumes), EDGETUNE_OUT, EDGETUNE_TRAIN_ARGS.\n' +
        'Runs: edgetune train s3://$DATA_BUCKET/datasets/$DATASET/ --out $EDGETUNE_OUT --publish s3://$MODEL_BUCKET/models/$DATASET\n' +
        '      --checkpoint s3://$MODEL_BUCKET/checkpoints/$DATASET/$AWS_BATCH_JOB_ID/ --json $EDGETUNE_TRAIN_ARGS\n',
    )
    .action(async (flags: string[]) => {
      let args: string[] = [];
      await run(async () => {
        args = jobArgs(containerJob(process.env, flags));
      });
      if (process.exitCode) return;
      process.stderr.write(`edgetune job: edgetune ${args.join(' ')}\n`);
      // The same train command as `edgetune train`, on its own program so its options parse as there.
      const train = new Program('edgetune');
      (await import('./train.js')).register(train);
      await train.parseAsync(args, { from: 'user' });
    });
}
