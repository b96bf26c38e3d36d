import type { Clock } from './clock.js';
import { DATASET_NAME, type DatasetChange } from './events.js';
import type { DatasetState, StateStore } from './state-store.js';

/** Runs training jobs: AWS Batch in the cloud, a child process locally. */
export interface JobRunner {
  /** Starts one training run for the dataset. */
  submit(dataset: string): Promise<{ id: string }>;
  /** True while a run for the dataset is queued or running. */
  active(dataset: string): Promise<boolean>;
}

/** Arranges for `RetrainTrigger.check(dataset)` to be called after a delay (a timer, or a delayed SQS message). */
export interface CheckScheduler {
  schedule(dataset: string, delayMs: number): Promise<void>;
  /** Longest delay the scheduler supports; longer waits are split into several checks. */
  readonly maxDelayMs?: number;
}

export interface RetrainTriggerOptions {
  runner: JobRunner;
  clock: Clock;
  store: StateStore;
  scheduler: CheckScheduler;
  /** A dataset is settled once no change arrived for this long. Default 2 minutes. */
  quietMs?: number;
  /** How often to look again while a run is active and a follow-up is owed. Default 1 minute. */
  pollMs?: number;
  /**
   * Treat a run submitted less than this long ago as active even if the runner does not list it
   * yet (AWS Batch's ListJobs can lag a fresh SubmitJob). Default 0.
   */
  activeGraceMs?: number;
  /** A scheduled check that has not arrived this long after its due time is presumed lost. Default 10 minutes. */
  lostCheckMs?: number;
  log?: (line: string) => void;
}

export type Decision =
  | { dataset: string; action: 'submitted'; jobId: string; reason: 'settled' | 'marker' }
  | { dataset: string; action: 'waiting'; checkInMs: number }
  | { dataset: string; action: 'deferred'; checkInMs: number }
  | { dataset: string; action: 'idle' }
  | { dataset: string; action: 'ignored'; reason: string };

/**
 * Debounces dataset uploads into training runs:
 * - one run per settled upload (no change for `quietMs`), however many files it had;
 * - never a second run while one is queued or running for the dataset;
 * - changes during a run cause exactly one follow-up run after it;
 * - a `_RETRAIN` marker starts a run at once (or right after the active one).
 * Operations on one dataset are serialised within this process; across processes the caller
 * must serialise (the Lambda runs with reserved concurrency 1).
 */
export class RetrainTrigger {
  readonly quietMs: number;
  readonly pollMs: number;
  private readonly activeGraceMs: number;
  private readonly lostCheckMs: number;
  private readonly locks = new Map<string, Promise<unknown>>();

  constructor(private readonly opts: RetrainTriggerOptions) {
    this.quietMs = opts.quietMs ?? 120_000;
    this.pollMs = opts.pollMs ?? 60_000;
    this.activeGraceMs = opts.activeGraceMs ?? 0;
    this.lostCheckMs = opts.lostCheckMs ?? 600_000;
    for (const [name, v] of Object.entries({ quietMs: this.quietMs, pollMs: this.pollMs })) {
      if (!Number.isFinite(v) || v < 0) throw new Error(`${name} must be a non-negative number, got ${v}`);
    }
  }

  /** Records a change to a dataset; a marker runs the check at once. */
  onChange(change: DatasetChange): Promise<Decision> {
    if (!DATASET_NAME.test(change.dataset)) {
      return Promise.resolve({ dataset: change.dataset, action: 'ignored', reason: 'invalid dataset name' });
    }
    return this.locked(change.dataset, async () => {
      const { dataset } = change;
      const state = await this.opts.store.load(dataset);
      const now = this.opts.clock.now();
      if (change.kind === 'marker') {
        state.force = true;
        return this.evaluate(dataset, state, now);
      }
      // The job lists the dataset when it starts, after submission: a change that happened before
      // the last submission is in that run even if its event arrives late.
      if (state.lastRun && change.time < state.lastRun.submittedAt) {
        return { dataset, action: 'ignored', reason: `covered by run ${state.lastRun.id}` };
      }
      state.lastChangeAt = Math.max(state.lastChangeAt ?? 0, Math.min(change.time, now));
      if (this.hasPendingCheck(state, now)) {
        await this.opts.store.save(dataset, state);
        return { dataset, action: 'waiting', checkInMs: Math.max(0, state.checkDueAt! - now) };
      }
      const delay = Math.max(0, state.lastChangeAt + this.quietMs - now);
      await this.scheduleCheck(dataset, state, now, delay);
      return { dataset, action: 'waiting', checkInMs: delay };
    });
  }

  /** Looks at a dataset again: called by the scheduled check, or when a run finished. */
  check(dataset: string): Promise<Decision> {
    if (!DATASET_NAME.test(dataset)) return Promise.resolve({ dataset, action: 'ignored', reason: 'invalid dataset name' });
    return this.locked(dataset, async () => {
      const state = await this.opts.store.load(dataset);
      const now = this.opts.clock.now();
      // This is the pending check arriving (or a run finishing): a new one is scheduled below if needed.
      if (state.checkDueAt !== null && now >= state.checkDueAt) state.checkDueAt = null;
      return this.evaluate(dataset, state, now);
    });
  }

  private async evaluate(dataset: string, state: DatasetState, now: number): Promise<Decision> {
    const log = this.opts.log ?? (() => {});
    if (!state.force && state.lastChangeAt === null) {
      await this.opts.store.save(dataset, state);
      return { dataset, action: 'idle' };
    }
    if (!state.force) {
      const wait = state.lastChangeAt! + this.quietMs - now;
      if (wait > 0) {
        if (!this.hasPendingCheck(state, now) || state.checkDueAt! > now + wait) await this.scheduleCheck(dataset, state, now, wait);
        else await this.opts.store.save(dataset, state);
        return { dataset, action: 'waiting', checkInMs: wait };
      }
    }
    if (await this.isActive(dataset, state, now)) {
      log(`retrain ${dataset}: a run is active, follow-up owed; checking again in ${this.pollMs} ms`);
      if (!this.hasPendingCheck(state, now)) await this.scheduleCheck(dataset, state, now, this.pollMs);
      else await this.opts.store.save(dataset, state);
      return { dataset, action: 'deferred', checkInMs: this.pollMs };
    }
    const reason = state.force ? 'marker' : 'settled';
    // If submit throws, the state stays dirty and the caller's retry (SQS redelivery) tries again.
    const { id } = await this.opts.runner.submit(dataset);
    log(`retrain ${dataset}: submitted run ${id} (${reason})`);
    await this.opts.store.save(dataset, {
      lastChangeAt: null,
      force: false,
      checkDueAt: state.checkDueAt,
      lastRun: { id, submittedAt: now, reason },
    });
    return { dataset, action: 'submitted', jobId: id, reason };
  }

  private async isActive(dataset: string, state: DatasetState, now: number): Promise<boolean> {
    if (this.activeGraceMs > 0 && state.lastRun && now - state.lastRun.submittedAt < this.activeGraceMs) return true;
    return this.opts.runner.active(dataset);
  }

  private hasPendingCheck(state: DatasetState, now: number): boolean {
    return state.checkDueAt !== null && now <= state.checkDueAt + this.lostCheckMs;
  }

  private async scheduleCheck(dataset: string, state: DatasetState, now: number, delayMs: number): Promise<void> {
    // Schedule before recording: if scheduling throws, nothing claims a check is pending and the
    // next event (or the redelivered message) schedules again. An extra check is harmless.
    const delay = Math.min(delayMs, this.opts.scheduler.maxDelayMs ?? Number.POSITIVE_INFINITY);
    await this.opts.scheduler.schedule(dataset, delay);
    state.checkDueAt = now + delay;
    await this.opts.store.save(dataset, state);
  }

  private locked<T>(dataset: string, fn: () => Promise<T>): Promise<T> {
    const prev = this.locks.get(dataset) ?? Promise.resolve();
    const run = prev.then(fn, fn);
    const tail = run.catch(() => {});
    this.locks.set(dataset, tail);
    void tail.then(() => {
      if (this.locks.get(dataset) === tail) this.locks.delete(dataset);
    });
    return run;
  }
}
