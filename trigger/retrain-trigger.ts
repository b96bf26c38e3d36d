import { randomUUID } from 'node:crypto';
import { DATASET_NAME } from '../core/s3/layout.js';
import type { Clock } from './clock.js';
import type { DatasetChange } from './events.js';
import { type DatasetState, StateConflictError, type StateStore } from './state-store.js';

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
  /**
   * A submit claim older than this is presumed abandoned (its instance died between claiming and
   * recording the run); another instance may then claim. Default 5 minutes (the Lambda times out at 60 s).
   */
  claimTtlMs?: number;
  log?: (line: string) => void;
}

export type Decision =
  | { dataset: string; action: 'submitted'; jobId: string; reason: 'settled' | 'marker' }
  | { dataset: string; action: 'waiting'; checkInMs: number }
  | { dataset: string; action: 'deferred'; checkInMs: number }
  | { dataset: string; action: 'idle' }
  | { dataset: string; action: 'ignored'; reason: string };

/** The state being worked on in one operation and the store version it was read (or last written) at. */
interface Txn {
  dataset: string;
  state: DatasetState;
  version: string | undefined;
}

const CONFLICT_ATTEMPTS = 8;

/**
 * Debounces dataset uploads into training runs:
 * - one run per settled upload (no change for `quietMs`), however many files it had;
 * - never a second run while one is queued or running for the dataset;
 * - changes during a run cause exactly one follow-up run after it;
 * - a `_RETRAIN` marker starts a run at once (or right after the active one); a marker whose event
 *   time is not after the last run's is already in that run (a redelivery) and is ignored;
 * - `sweep()` re-checks every dataset with pending changes, so a lost check message only delays a run.
 * Several instances may run at once (the Lambda has an SQS maximum concurrency of 2 or more): every
 * state write is a compare-and-swap, an operation that loses one re-reads and decides again, and a
 * run is submitted only by the instance whose claim (written before SubmitJob) won.
 */
export class RetrainTrigger {
  readonly quietMs: number;
  readonly pollMs: number;
  private readonly activeGraceMs: number;
  private readonly lostCheckMs: number;
  private readonly claimTtlMs: number;
  private readonly locks = new Map<string, Promise<unknown>>();

  constructor(private readonly opts: RetrainTriggerOptions) {
    this.quietMs = opts.quietMs ?? 120_000;
    this.pollMs = opts.pollMs ?? 60_000;
    this.activeGraceMs = opts.activeGraceMs ?? 0;
    this.lostCheckMs = opts.lostCheckMs ?? 600_000;
    this.claimTtlMs = opts.claimTtlMs ?? 300_000;
    for (const [name, v] of Object.entries({ quietMs: this.quietMs, pollMs: this.pollMs })) {
      if (!Number.isFinite(v) || v < 0) throw new Error(`${name} must be a non-negative number, got ${v}`);
    }
  }

  /** Records a change to a dataset; a marker runs the check at once. */
  onChange(change: DatasetChange): Promise<Decision> {
    if (!DATASET_NAME.test(change.dataset)) {
      return Promise.resolve({ dataset: change.dataset, action: 'ignored', reason: 'invalid dataset name' });
    }
    return this.transaction(change.dataset, async (t) => {
      const { dataset, state } = t;
      const now = this.opts.clock.now();
      const covered = state.lastRun ? (state.lastRun.coveredUntil ?? state.lastRun.submittedAt) : Number.NEGATIVE_INFINITY;
      if (change.kind === 'marker') {
        // A redelivered (or late) marker event: the run it asked for, or a later one, was already submitted.
        if (change.time <= covered) return { dataset, action: 'ignored', reason: `marker already covered by run ${state.lastRun?.id}` };
        if (state.submitting && !this.claimStale(state, now) && change.time <= state.submitting.at) {
          return { dataset, action: 'ignored', reason: 'marker covered by the run being submitted' };
        }
        state.force = true;
        state.forceAt = Math.max(state.forceAt ?? 0, change.time);
        return this.evaluate(t, now);
      }
      // The job lists the dataset when it starts, after submission: a change that happened before
      // the last submission is in that run even if its event arrives late.
      if (state.lastRun && change.time < covered) {
        return { dataset, action: 'ignored', reason: `covered by run ${state.lastRun.id}` };
      }
      state.lastChangeAt = Math.max(state.lastChangeAt ?? 0, Math.min(change.time, now));
      if (this.hasPendingCheck(state, now)) {
        await this.save(t);
        return { dataset, action: 'waiting', checkInMs: Math.max(0, (state.checkDueAt as number) - now) };
      }
      const delay = Math.max(0, state.lastChangeAt + this.quietMs - now);
      await this.scheduleCheck(t, now, delay);
      return { dataset, action: 'waiting', checkInMs: delay };
    });
  }

  /** Looks at a dataset again: called by the scheduled check, a finished run, or the sweep. */
  check(dataset: string): Promise<Decision> {
    if (!DATASET_NAME.test(dataset)) return Promise.resolve({ dataset, action: 'ignored', reason: 'invalid dataset name' });
    return this.transaction(dataset, async (t) => {
      const now = this.opts.clock.now();
      // This is the pending check arriving (or a run finishing): a new one is scheduled below if needed.
      if (t.state.checkDueAt !== null && now >= t.state.checkDueAt) t.state.checkDueAt = null;
      return this.evaluate(t, now);
    });
  }

  /**
   * The scheduled sweep: checks every dataset whose state has pending changes, a marker or an
   * abandoned claim. A settled upload whose delayed check message was lost (or dead-lettered)
   * is submitted here; datasets still in their quiet period or with an active run are left as they are.
   */
  async sweep(): Promise<Decision[]> {
    const out: Decision[] = [];
    for (const dataset of await this.opts.store.datasets()) {
      if (!DATASET_NAME.test(dataset)) continue;
      const { state } = await this.opts.store.read(dataset);
      if (state.lastChangeAt === null && !state.force && !state.submitting) continue;
      out.push(await this.check(dataset));
    }
    return out;
  }

  private async evaluate(t: Txn, now: number): Promise<Decision> {
    const { dataset, state } = t;
    const log = this.opts.log ?? (() => {});
    if (!state.force && state.lastChangeAt === null) {
      await this.save(t);
      return { dataset, action: 'idle' };
    }
    if (!state.force) {
      const wait = (state.lastChangeAt as number) + this.quietMs - now;
      if (wait > 0) {
        if (!this.hasPendingCheck(state, now) || (state.checkDueAt as number) > now + wait) await this.scheduleCheck(t, now, wait);
        else await this.save(t);
        return { dataset, action: 'waiting', checkInMs: wait };
      }
    }
    const claimed = state.submitting && !this.claimStale(state, now);
    if (claimed || (await this.isActive(dataset, state, now))) {
      log(`retrain ${dataset}: a run is active${claimed ? ' (being submitted)' : ''}, follow-up owed; checking again in ${this.pollMs} ms`);
      if (!this.hasPendingCheck(state, now)) await this.scheduleCheck(t, now, this.pollMs);
      else await this.save(t);
      return { dataset, action: 'deferred', checkInMs: this.pollMs };
    }
    const reason = state.force ? 'marker' : 'settled';
    // Claim first: if another instance wrote in between, this write fails and the operation is re-decided.
    const snapshot = structuredClone(state);
    const token = randomUUID();
    state.submitting = { token, at: now };
    await this.save(t);
    // If submit throws, the claim stays until it goes stale and the state stays dirty: the caller's
    // retry (SQS redelivery) or the sweep tries again then.
    let id: string;
    try {
      ({ id } = await this.opts.runner.submit(dataset));
    } catch (err) {
      await this.releaseClaim(t, token).catch(() => {});
      throw err;
    }
    log(`retrain ${dataset}: submitted run ${id} (${reason})`);
    await this.recordRun(t, token, snapshot, { id, submittedAt: now, reason, coveredUntil: Math.max(now, snapshot.forceAt ?? 0) });
    return { dataset, action: 'submitted', jobId: id, reason };
  }

  /**
   * After SubmitJob: clears the claim and what the run covers, keeping whatever arrived meanwhile
   * (a newer change or marker means one follow-up run). Never re-submits: a conflict re-reads and merges.
   */
  private async recordRun(t: Txn, token: string, before: DatasetState, run: NonNullable<DatasetState['lastRun']>): Promise<void> {
    for (let attempt = 0; ; attempt++) {
      const s = t.state;
      if (s.submitting?.token === token) s.submitting = null;
      if (s.lastChangeAt !== null && s.lastChangeAt <= (before.lastChangeAt ?? Number.NEGATIVE_INFINITY)) s.lastChangeAt = null;
      if (s.force && (s.forceAt ?? 0) <= (before.forceAt ?? 0) && before.force) {
        s.force = false;
        s.forceAt = null;
      }
      if (!s.lastRun || s.lastRun.submittedAt <= run.submittedAt) s.lastRun = run;
      try {
        await this.save(t);
        return;
      } catch (err) {
        if (!(err instanceof StateConflictError) || attempt >= CONFLICT_ATTEMPTS) throw err;
        Object.assign(t, await this.opts.store.read(t.dataset));
      }
    }
  }

  private async releaseClaim(t: Txn, token: string): Promise<void> {
    for (let attempt = 0; attempt < CONFLICT_ATTEMPTS; attempt++) {
      if (t.state.submitting?.token !== token) return;
      t.state.submitting = null;
      try {
        await this.save(t);
        return;
      } catch (err) {
        if (!(err instanceof StateConflictError)) throw err;
        Object.assign(t, await this.opts.store.read(t.dataset));
      }
    }
  }

  private claimStale(state: DatasetState, now: number): boolean {
    return !!state.submitting && now - state.submitting.at > this.claimTtlMs;
  }

  private async isActive(dataset: string, state: DatasetState, now: number): Promise<boolean> {
    if (this.activeGraceMs > 0 && state.lastRun && now - state.lastRun.submittedAt < this.activeGraceMs) return true;
    return this.opts.runner.active(dataset);
  }

  private hasPendingCheck(state: DatasetState, now: number): boolean {
    return state.checkDueAt !== null && now <= state.checkDueAt + this.lostCheckMs;
  }

  private async scheduleCheck(t: Txn, now: number, delayMs: number): Promise<void> {
    // Schedule before recording: if scheduling throws, nothing claims a check is pending and the
    // next event (or the redelivered message) schedules again. An extra check is harmless.
    const delay = Math.min(delayMs, this.opts.scheduler.maxDelayMs ?? Number.POSITIVE_INFINITY);
    await this.opts.scheduler.schedule(t.dataset, delay);
    t.state.checkDueAt = now + delay;
    await this.save(t);
  }

  private async save(t: Txn): Promise<void> {
    t.version = await this.opts.store.write(t.dataset, t.state, t.version);
  }

  /** Read, decide, compare-and-swap; a lost swap re-reads and decides again (serialised per dataset in this process). */
  private transaction(dataset: string, fn: (t: Txn) => Promise<Decision>): Promise<Decision> {
    return this.locked(dataset, async () => {
      for (let attempt = 1; ; attempt++) {
        const t: Txn = { dataset, ...(await this.opts.store.read(dataset)) };
        try {
          return await fn(t);
        } catch (err) {
          if (!(err instanceof StateConflictError) || attempt >= CONFLICT_ATTEMPTS) throw err;
          this.opts.log?.(`retrain ${dataset}: state changed concurrently, deciding again (attempt ${attempt + 1})`);
          await new Promise((r) => setTimeout(r, Math.random() * 50 * attempt));
        }
      }
    });
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
