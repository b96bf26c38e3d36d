import { describe, expect, it } from 'vitest';
import { ManualClock } from '../trigger/clock.js';
import { changeFromKey, changesFromS3Notification, parseTriggerMessage } from '../trigger/events.js';
import { ChildProcessJobRunner, createLocalTrigger } from '../trigger/local.js';
import type { Decision, JobRunner } from '../trigger/retrain-trigger.js';

/** A runner whose runs last until the test finishes them. */
class FakeRunner implements JobRunner {
  submitted: string[] = [];
  running = new Set<string>();
  failNext = false;
  async submit(dataset: string) {
    if (this.failNext) {
      this.failNext = false;
      throw new Error('submit failed');
    }
    if (this.running.has(dataset)) throw new Error(`duplicate run for ${dataset}`);
    this.submitted.push(dataset);
    this.running.add(dataset);
    return { id: `job-${this.submitted.length}` };
  }
  async active(dataset: string) {
    return this.running.has(dataset);
  }
  finish(dataset: string) {
    this.running.delete(dataset);
  }
}

const QUIET = 120_000;
const POLL = 5_000;

function setup() {
  const clock = new ManualClock();
  const runner = new FakeRunner();
  const decisions: Decision[] = [];
  const errors: unknown[] = [];
  const local = createLocalTrigger({
    runner,
    clock,
    quietMs: QUIET,
    pollMs: POLL,
    onDecision: (d) => decisions.push(d),
    onError: (e) => errors.push(e),
  });
  const upload = (key: string) => local.handleS3Notification(s3Event('ObjectCreated:Put', key, clock.now()));
  return { clock, runner, decisions, errors, local, upload };
}

function s3Event(eventName: string, key: string, time: number, bucket = 'data') {
  return {
    Records: [{ eventName, eventTime: new Date(time).toISOString(), s3: { bucket: { name: bucket }, object: { key } } }],
  };
}

describe('dataset key parsing', () => {
  it('maps keys under datasets/<name>/ to changes and rejects everything else', () => {
    expect(changeFromKey('datasets/alpaca/alpaca/1.jpg', false, 5)).toEqual({
      dataset: 'alpaca',
      key: 'datasets/alpaca/alpaca/1.jpg',
      kind: 'upload',
      time: 5,
    });
    expect(changeFromKey('datasets/alpaca/x.jpg', true, 5)?.kind).toBe('delete');
    expect(changeFromKey('datasets/alpaca/_RETRAIN', false, 5)?.kind).toBe('marker');
    expect(changeFromKey('datasets/alpaca/_RETRAIN', true, 5)).toBeNull();
    expect(changeFromKey('datasets/alpaca/', false, 5)).toBeNull();
    expect(changeFromKey('datasets/alpaca/sub/', false, 5)).toBeNull();
    expect(changeFromKey('datasets/bad%20name/x.jpg', false, 5)).toBeNull();
    expect(changeFromKey('models/alpaca/x.jpg', false, 5)).toBeNull();
    expect(changeFromKey('trigger-state/alpaca.json', false, 5)).toBeNull();
  });

  it('parses S3 notifications (s3rver shape), filtering by bucket and event type', () => {
    const t = Date.UTC(2025, 0, 1);
    expect(changesFromS3Notification(s3Event('ObjectCreated:Put', 'datasets/a/x.jpg', t))).toHaveLength(1);
    expect(changesFromS3Notification(s3Event('ObjectCreated:Put', 'datasets/a/x.jpg', t), 'other')).toHaveLength(0);
    expect(changesFromS3Notification(s3Event('ObjectRemoved:Delete', 'datasets/a/x.jpg', t))[0].kind).toBe('delete');
    expect(changesFromS3Notification(s3Event('ObjectRestore:Post', 'datasets/a/x.jpg', t))).toHaveLength(0);
    expect(changesFromS3Notification({ nope: true })).toEqual([]);
  });

  it('parses EventBridge S3 events, Batch state changes and check messages', () => {
    const s3 = {
      source: 'aws.s3',
      'detail-type': 'Object Created',
      time: '2025-01-01T00:00:00Z',
      detail: { bucket: { name: 'b' }, object: { key: 'datasets/alpaca/a/1.jpg' } },
    };
    expect(parseTriggerMessage(JSON.stringify(s3))).toEqual({
      type: 'change',
      change: { dataset: 'alpaca', key: 'datasets/alpaca/a/1.jpg', kind: 'upload', time: Date.UTC(2025, 0, 1) },
    });
    const batch = {
      source: 'aws.batch',
      'detail-type': 'Batch Job State Change',
      detail: { jobName: 'edgetune-alpaca', jobId: 'j1', status: 'SUCCEEDED' },
    };
    expect(parseTriggerMessage(JSON.stringify(batch))).toEqual({
      type: 'runFinished',
      dataset: 'alpaca',
      jobId: 'j1',
      status: 'SUCCEEDED',
    });
    expect(parseTriggerMessage(JSON.stringify({ ...batch, detail: { ...batch.detail, jobName: 'other' } })).type).toBe('ignored');
    expect(parseTriggerMessage('{"type":"edgetune.check","dataset":"alpaca"}')).toEqual({ type: 'check', dataset: 'alpaca' });
    expect(parseTriggerMessage('{"type":"edgetune.check","dataset":"../x"}').type).toBe('ignored');
    expect(parseTriggerMessage('not json').type).toBe('ignored');
    expect(parseTriggerMessage(JSON.stringify({ ...s3, time: 'yesterday' })).type).toBe('ignored');
  });
});

describe('retrain trigger (local driver, fake clock)', () => {
  it('starts exactly one run once a many-file upload has settled', async () => {
    const { clock, runner, upload, local } = setup();
    for (let i = 0; i < 50; i++) {
      await upload(`datasets/alpaca/${i % 2 ? 'alpaca' : 'not_alpaca'}/${i}.jpg`);
      await clock.advance(2_000); // files keep arriving every 2 s: never quiet for 2 min
    }
    expect(runner.submitted).toEqual([]);
    await clock.advance(QUIET - 2_001);
    expect(runner.submitted).toEqual([]);
    await clock.advance(1);
    await local.drain();
    expect(runner.submitted).toEqual(['alpaca']);
    await clock.advance(10 * QUIET);
    expect(runner.submitted).toEqual(['alpaca']);
    expect(clock.pending).toBe(0);
  });

  it('does not duplicate an active run; changes during it cause exactly one follow-up', async () => {
    const { clock, runner, upload, local, decisions } = setup();
    await upload('datasets/alpaca/a/1.jpg');
    await clock.advance(QUIET);
    expect(runner.submitted).toEqual(['alpaca']);

    // Two separate bursts during the run, each settling while the run is still going.
    await upload('datasets/alpaca/a/2.jpg');
    await clock.advance(QUIET + 1_000);
    await upload('datasets/alpaca/a/3.jpg');
    await clock.advance(QUIET * 3);
    expect(runner.submitted).toEqual(['alpaca']);
    expect(decisions.some((d) => d.action === 'deferred')).toBe(true);

    runner.finish('alpaca');
    await clock.advance(POLL);
    await local.drain();
    expect(runner.submitted).toEqual(['alpaca', 'alpaca']);

    runner.finish('alpaca');
    await clock.advance(QUIET * 5);
    expect(runner.submitted).toEqual(['alpaca', 'alpaca']);
  });

  it('debounces datasets independently', async () => {
    const { clock, runner, upload } = setup();
    await upload('datasets/cats/a/1.jpg');
    await clock.advance(60_000);
    await upload('datasets/dogs/a/1.jpg');
    await clock.advance(60_000);
    expect(runner.submitted).toEqual(['cats']);
    await clock.advance(60_000);
    expect(runner.submitted).toEqual(['cats', 'dogs']);
  });

  it('a _RETRAIN marker starts a run at once, or right after the active one', async () => {
    const { clock, runner, upload, local } = setup();
    await upload('datasets/alpaca/a/1.jpg');
    await upload('datasets/alpaca/_RETRAIN');
    expect(runner.submitted).toEqual(['alpaca']);
    // The files uploaded before the marker are in that run: no second run when their quiet period ends.
    await clock.advance(QUIET * 2);
    expect(runner.submitted).toEqual(['alpaca']);

    const [decision] = await upload('datasets/alpaca/_RETRAIN');
    expect(decision.action).toBe('deferred');
    runner.finish('alpaca');
    await clock.advance(POLL);
    await local.drain();
    expect(runner.submitted).toEqual(['alpaca', 'alpaca']);
  });

  it('ignores late events for changes that the last run already covered', async () => {
    const { clock, runner, local } = setup();
    const t0 = clock.now();
    await local.handleS3Notification(s3Event('ObjectCreated:Put', 'datasets/alpaca/a/1.jpg', t0));
    await clock.advance(QUIET);
    expect(runner.submitted).toHaveLength(1);
    const [late] = await local.handleS3Notification(s3Event('ObjectCreated:Put', 'datasets/alpaca/a/0.jpg', t0 - 1_000));
    expect(late).toMatchObject({ action: 'ignored' });
    runner.finish('alpaca');
    await clock.advance(QUIET * 2);
    expect(runner.submitted).toHaveLength(1);
  });

  it('retries after a failed submission', async () => {
    const { clock, runner, upload, errors, local } = setup();
    runner.failNext = true;
    await upload('datasets/alpaca/a/1.jpg');
    await clock.advance(QUIET);
    await local.drain();
    expect(errors).toHaveLength(1);
    expect(runner.submitted).toEqual([]);
    await clock.advance(30_000);
    await local.drain();
    expect(runner.submitted).toEqual(['alpaca']);
  });
});

describe('ChildProcessJobRunner with the local trigger', () => {
  it('runs a real child process, reports it active, and starts the follow-up when it exits', async () => {
    const runs: string[] = [];
    const runner = new ChildProcessJobRunner({
      command: (dataset) => ({ cmd: process.execPath, args: ['-e', 'setTimeout(() => {}, 300)', dataset] }),
      stdio: 'ignore',
    });
    runner.on('exit', (e) => runs.push(`${e.dataset}:${e.code}`));
    // Real timers, short quiet period.
    const local = createLocalTrigger({ runner, quietMs: 50, pollMs: 60_000 });
    try {
      await local.handleS3Notification(s3Event('ObjectCreated:Put', 'datasets/alpaca/_RETRAIN', Date.now()));
      expect(await runner.active('alpaca')).toBe(true);
      await expect(runner.submit('alpaca')).rejects.toThrow(/already active/);
      await local.handleS3Notification(s3Event('ObjectCreated:Put', 'datasets/alpaca/a/9.jpg', Date.now()));
      await waitFor(() => runs.length === 2, 10_000);
      expect(runs).toEqual(['alpaca:0', 'alpaca:0']);
      await local.drain();
      expect(await runner.active('alpaca')).toBe(false);
    } finally {
      local.close();
      await runner.stopAll();
    }
  });
});

describe('ChildProcessJobRunner: one local run at a time', () => {
  it('queues runs for other datasets and starts each after the previous one exits', async () => {
    const events: string[] = [];
    const runner = new ChildProcessJobRunner({
      command: (dataset) => ({ cmd: process.execPath, args: ['-e', 'setTimeout(() => {}, 200)', dataset] }),
      stdio: 'ignore',
    });
    runner.on('start', (e) => events.push(`start ${e.dataset}`));
    runner.on('exit', (e) => events.push(`exit ${e.dataset}:${e.code}`));
    try {
      const ids = await Promise.all(['a', 'b', 'c'].map((d) => runner.submit(d)));
      expect(new Set(ids.map((i) => i.id)).size).toBe(3);
      expect(runner.children).toHaveLength(1);
      expect(runner.queued).toEqual(['b', 'c']);
      // A queued run counts as active: the trigger defers instead of submitting it twice.
      expect(await runner.active('c')).toBe(true);
      await expect(runner.submit('c')).rejects.toThrow(/already active/);
      await waitFor(() => events.length === 6, 10_000);
      expect(events).toEqual(['start a', 'exit a:0', 'start b', 'exit b:0', 'start c', 'exit c:0']);
      expect(await runner.active('c')).toBe(false);
    } finally {
      await runner.stopAll();
    }
  });

  it('stopAll drops queued runs and ends the running one', async () => {
    const runner = new ChildProcessJobRunner({
      command: () => ({ cmd: process.execPath, args: ['-e', 'setTimeout(() => {}, 30000)'] }),
      stdio: 'ignore',
    });
    const started: string[] = [];
    runner.on('start', (e) => started.push(e.dataset));
    await runner.submit('a');
    await runner.submit('b');
    await runner.stopAll();
    expect(started).toEqual(['a']);
    expect(runner.children).toEqual([]);
    expect(await runner.active('b')).toBe(false);
  });
});

async function waitFor(cond: () => boolean, ms: number) {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error('timed out');
    await new Promise((r) => setTimeout(r, 20));
  }
}
