import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { containerJob, jobArgs } from '../cli/job-args.js';
import { locations, trainCommand } from '../cli/local-system.js';
import { TRAINING_NODE_FLAGS } from '../cli/node-flags.js';
import { REPO_DIR } from './helpers/shared.js';

const BATCH_ENV = { DATASET: 'alpaca', DATA_BUCKET: 'data-bkt', MODEL_BUCKET: 'model-bkt', AWS_BATCH_JOB_ID: 'job-123' };

describe('one training job command for the container and the local run', () => {
  it('the container job: per-job checkpoint, JSON events, EDGETUNE_TRAIN_ARGS then extra flags', () => {
    const args = jobArgs(
      containerJob({ ...BATCH_ENV, EDGETUNE_OUT: '/tmp/o', EDGETUNE_TRAIN_ARGS: ' --epochs 5  --alpha 0.35 ' }, ['--seed', '3']),
    );
    expect(args).toEqual([
      'train',
      's3://data-bkt/datasets/alpaca/',
      '--out',
      '/tmp/o',
      '--publish',
      's3://model-bkt/models/alpaca',
      '--checkpoint',
      's3://model-bkt/checkpoints/alpaca/job-123/',
      '--json',
      '--epochs',
      '5',
      '--alpha',
      '0.35',
      '--seed',
      '3',
    ]);
    // Without a job id (a hand-run container) and EDGETUNE_OUT: the Dockerfile's defaults.
    const bare = jobArgs(containerJob({ ...BATCH_ENV, AWS_BATCH_JOB_ID: '' }));
    expect(bare).toContain('s3://model-bkt/checkpoints/alpaca/manual/');
    expect(bare[bare.indexOf('--out') + 1]).toBe('/tmp/edgetune-out');
  });

  it('refuses a container environment that names no dataset, or one outside the key charset', () => {
    expect(() => containerJob({ ...BATCH_ENV, DATASET: '' })).toThrow(/DATASET: must name the dataset/);
    expect(() => containerJob({ ...BATCH_ENV, DATASET: '../models' })).toThrow(/DATASET/);
    expect(() => containerJob({ DATASET: 'a' })).toThrow(/DATA_BUCKET/);
  });

  it('npm start runs the same train command: one bucket, checkpoint per dataset, progress bars', () => {
    const loc = locations('demo', 'edgetune', '/tmp/w');
    const { args } = trainCommand(loc, ['--epochs', '2']);
    // node's flags for a training process (cli/node-flags.ts), the CLI, then the job's arguments.
    expect(args.slice(0, TRAINING_NODE_FLAGS.length)).toEqual([...TRAINING_NODE_FLAGS]);
    expect(args.slice(TRAINING_NODE_FLAGS.length + 1)).toEqual(
      jobArgs({ dataset: 'demo', dataBucket: 'edgetune', modelBucket: 'edgetune', outDir: loc.outDir, extraArgs: ['--epochs', '2'] }),
    );
    expect(args).not.toContain('--json');
    expect(args).toContain('s3://edgetune/checkpoints/demo/');
  });

  it('the training image runs `edgetune job`', () => {
    const dockerfile = readFileSync(path.join(REPO_DIR, 'training/Dockerfile'), 'utf8');
    expect(dockerfile.trim().split('\n').at(-1)).toBe('ENTRYPOINT ["npx", "--no-install", "edgetune", "job"]');
  });

  it('`edgetune job` hands its arguments to `edgetune train`, and fails clearly without a dataset', () => {
    const bin = path.join(REPO_DIR, 'bin/edgetune.mjs');
    const env = { ...process.env, ...BATCH_ENV, EDGETUNE_TRAIN_ARGS: '--epochs two' };
    const bad = spawnSync(process.execPath, [bin, 'job'], { env, encoding: 'utf8', timeout: 60_000 });
    expect(bad.stderr).toContain('edgetune job: edgetune train s3://data-bkt/datasets/alpaca/');
    expect(bad.stderr).toMatch(/epochs must be an integer; got 'two'/);
    expect(bad.status).toBe(1);
    const none = spawnSync(process.execPath, [bin, 'job'], { env: { ...env, DATASET: '' }, encoding: 'utf8', timeout: 60_000 });
    expect(none.stderr).toMatch(/training container's environment is invalid: DATASET/);
    expect(none.status).toBe(1);
  }, 120_000);
});
