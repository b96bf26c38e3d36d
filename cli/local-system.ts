import type { EventEmitter } from 'node:events';
import { existsSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { getObjectIfExists, listObjects, putObject, type S3Handle, s3ChildEnv } from '../core/s3/client.js';
import { DEFAULT_BUCKET } from '../core/s3/embedded.js';
import { checkpointUri, DATASET_NAME, datasetUri, modelUri, S3_LAYOUT } from '../core/s3/layout.js';
import { uploadDataset } from '../training/dataset-s3.js';
import { demoImages } from '../training/demo-data.js';
import { ChildProcessJobRunner, createLocalTrigger, type LocalTrigger } from '../trigger/local.js';
import { jobArgs } from './job-args.js';

import { TRAINING_NODE_FLAGS } from './node-flags.js';

const BIN = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../bin/edgetune.mjs');

export interface Locations {
  bucket: string;
  dataset: string;
  datasetUri: string;
  modelUri: string;
  checkpointUri: string;
  /** Local folder the training run writes before publishing (model, manifest, report). */
  outDir: string;
}

export function locations(dataset: string, bucket = DEFAULT_BUCKET, workDir = '.edgetune'): Locations {
  return {
    bucket,
    dataset,
    datasetUri: datasetUri(bucket, dataset),
    modelUri: modelUri(bucket, dataset),
    checkpointUri: checkpointUri(bucket, dataset),
    outDir: path.resolve(workDir, 'models', dataset),
  };
}

/**
 * The training job as the AWS Batch container runs it (the same jobArgs), in a child process: one
 * bucket for data and models, a checkpoint per dataset, progress bars on the terminal.
 */
export function trainCommand(loc: Locations, extraArgs: readonly string[] = []): { cmd: string; args: string[]; env: NodeJS.ProcessEnv } {
  return {
    cmd: process.execPath,
    env: { ...process.env, ...s3ChildEnv() },
    args: [
      ...TRAINING_NODE_FLAGS,
      BIN,
      ...jobArgs({ dataset: loc.dataset, dataBucket: loc.bucket, modelBucket: loc.bucket, outDir: loc.outDir, extraArgs }),
    ],
  };
}

/** A dataset name S3 keys and the trigger accept, from a folder name. */
export function datasetName(dir: string): string {
  const n = path
    .basename(path.resolve(dir))
    .replace(/[^A-Za-z0-9_-]+/g, '-')
    .replace(/^[-_]+/, '')
    .slice(0, 100);
  if (!DATASET_NAME.test(n)) throw new Error(`cannot make a dataset name from ${dir}; rename the folder (letters, digits, - and _)`);
  return n;
}

export async function hasObjects(bucket: string, prefix: string): Promise<boolean> {
  return (await listObjects(bucket, prefix)).objects.some((o) => !o.key.endsWith('/_RETRAIN'));
}

/** Uploads the user's folder, or the generated demo dataset, unless the dataset is already there. */
export async function seedDataset(loc: Locations, data: string | undefined, log: (line: string) => void): Promise<void> {
  if (await hasObjects(loc.bucket, `${S3_LAYOUT.datasets}${loc.dataset}/`)) {
    log(`dataset ${loc.datasetUri} already in S3: not uploading`);
    return;
  }
  if (data) {
    if (!existsSync(data)) throw new Error(`dataset folder not found: ${data}`);
    const r = await uploadDataset(data, loc.datasetUri);
    log(`uploaded ${r.uploaded} files from ${data} to ${loc.datasetUri}`);
    return;
  }
  let n = 0;
  for await (const img of demoImages({ classes: 2, perClass: 60, size: 192, seed: 42 })) {
    await putObject(`${loc.datasetUri}${img.relPath}`, img.bytes, { ContentType: 'image/jpeg' });
    n++;
  }
  log(`generated the demo dataset (2 classes x 60 photo-like images) into ${loc.datasetUri}`);
  void n;
}

export async function hasCurrentModel(loc: Locations): Promise<boolean> {
  return !!(await getObjectIfExists(`${loc.modelUri}/current.json`));
}

export interface Watcher {
  trigger: LocalTrigger;
  runner: ChildProcessJobRunner;
  close(): Promise<void>;
}

/**
 * `edgetune watch`: the retrain trigger on the embedded S3's event stream (or on polling, for an
 * external endpoint), running the training job in a local child process instead of AWS Batch, one
 * run at a time on this machine (runs for other datasets queue).
 */
export function watchUploads(
  s3: S3Handle,
  opts: {
    bucket?: string;
    quietMs: number;
    extraArgs?: string[];
    log: (line: string) => void;
    stdio?: 'inherit' | 'ignore' | 'pipe';
    workDir?: string;
  },
): Watcher {
  const bucket = opts.bucket ?? DEFAULT_BUCKET;
  const runner = new ChildProcessJobRunner({
    command: (dataset) => trainCommand(locations(dataset, bucket, opts.workDir), opts.extraArgs),
    stdio: opts.stdio ?? 'inherit',
  });
  const trigger = createLocalTrigger({
    runner,
    quietMs: opts.quietMs,
    bucket,
    log: opts.log,
    onDecision: (d) => {
      if (d.action !== 'submitted') return;
      const waiting = runner.queued.includes(d.dataset);
      opts.log(
        `retraining ${d.dataset} (${d.reason}): run ${d.jobId}${waiting ? ' queued behind the active run (one local run at a time)' : ''}`,
      );
    },
  });
  let stopPolling: (() => void) | undefined;
  const onEvent = (event: unknown) => void trigger.handleS3Notification(event);
  const events = s3.server as unknown as EventEmitter | undefined;
  if (events) {
    events.on('event', onEvent);
  } else {
    stopPolling = pollForChanges(bucket, 10_000, onEvent);
    opts.log('no embedded S3 event stream: polling s3://' + bucket + '/datasets/ every 10 s');
  }
  runner.on('exit', (e) => opts.log(`training run ${e.id} for ${e.dataset} ended (${e.code === 0 ? 'ok' : `exit ${e.code ?? e.signal}`})`));
  return {
    trigger,
    runner,
    async close() {
      events?.off('event', onEvent);
      stopPolling?.();
      trigger.close();
      await runner.stopAll();
    },
  };
}

/** For S3 endpoints without an event stream: list datasets/ and report changed keys as S3 events. */
function pollForChanges(bucket: string, everyMs: number, emit: (notification: unknown) => void): () => void {
  let known: Map<string, string> | undefined;
  let stopped = false;
  const tick = async () => {
    if (stopped) return;
    try {
      const { objects } = await listObjects(bucket, S3_LAYOUT.datasets);
      const now = new Map(objects.map((o) => [o.key, o.etag ?? '']));
      if (known) {
        const records: unknown[] = [];
        for (const [key, etag] of now) if (known.get(key) !== etag) records.push(record(bucket, key, 'ObjectCreated:Put'));
        for (const key of known.keys()) if (!now.has(key)) records.push(record(bucket, key, 'ObjectRemoved:Delete'));
        if (records.length) emit({ Records: records });
      }
      known = now;
    } catch {
      // The next tick tries again.
    }
    if (!stopped) timer = setTimeout(tick, everyMs);
  };
  let timer = setTimeout(tick, 0);
  return () => {
    stopped = true;
    clearTimeout(timer);
  };
}

function record(bucket: string, key: string, eventName: string) {
  return { eventName, eventTime: new Date().toISOString(), s3: { bucket: { name: bucket }, object: { key } } };
}
