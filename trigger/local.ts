import { type ChildProcess, spawn } from 'node:child_process';
import { EventEmitter } from 'node:events';
import { systemClock, type TimerClock } from './clock.js';
import { changesFromS3Notification } from './events.js';
import { type CheckScheduler, type Decision, type JobRunner, RetrainTrigger } from './retrain-trigger.js';
import { MemoryStateStore } from './state-store.js';

/** Runs checks on in-process timers: at most one timer per dataset, the latest schedule wins. */
export class TimerScheduler implements CheckScheduler {
  private readonly timers = new Map<string, unknown>();

  constructor(
    private readonly clock: TimerClock,
    private readonly onDue: (dataset: string) => void,
  ) {}

  async schedule(dataset: string, delayMs: number): Promise<void> {
    const existing = this.timers.get(dataset);
    if (existing !== undefined) this.clock.clearTimeout(existing);
    const handle = this.clock.setTimeout(() => {
      if (this.timers.get(dataset) === handle) this.timers.delete(dataset);
      this.onDue(dataset);
    }, delayMs);
    this.timers.set(dataset, handle);
  }

  close(): void {
    for (const handle of this.timers.values()) this.clock.clearTimeout(handle);
    this.timers.clear();
  }
}

export interface ChildProcessJobRunnerOptions {
  /** The command that trains one dataset, e.g. `npx edgetune train s3://.../datasets/<name>/ --publish ...`. */
  command: (dataset: string) => { cmd: string; args: string[]; env?: NodeJS.ProcessEnv; cwd?: string };
  stdio?: 'inherit' | 'ignore' | 'pipe';
  /** Training runs at once on this machine; the others wait in submission order. Default 1 (a run uses every core). */
  maxConcurrent?: number;
}

export interface RunExit {
  dataset: string;
  id: string;
  code: number | null;
  signal: NodeJS.Signals | null;
}

/**
 * Local stand-in for AWS Batch: one child process per run, at most `maxConcurrent` (default 1) at a
 * time across datasets, the rest queued in order (what a Batch queue with one GPU does). Emits
 * 'start' when a queued run's process starts and 'exit' (RunExit) when a run ends, so the local
 * trigger can start a follow-up without polling.
 */
export class ChildProcessJobRunner
  extends EventEmitter<{ exit: [RunExit]; start: [{ dataset: string; id: string }] }>
  implements JobRunner
{
  private readonly running = new Map<string, { id: string; child: ChildProcess }>();
  private readonly queue: Array<{ dataset: string; id: string }> = [];
  private readonly maxConcurrent: number;
  private seq = 0;
  private stopped = false;

  constructor(private readonly opts: ChildProcessJobRunnerOptions) {
    super();
    this.maxConcurrent = opts.maxConcurrent ?? 1;
    if (!Number.isInteger(this.maxConcurrent) || this.maxConcurrent < 1) {
      throw new Error(`maxConcurrent must be a positive integer, got ${opts.maxConcurrent}`);
    }
  }

  async submit(dataset: string): Promise<{ id: string }> {
    if (await this.active(dataset)) throw new Error(`a run for ${dataset} is already active`);
    if (this.stopped) throw new Error('the local job runner is stopped');
    const id = `local-${++this.seq}`;
    this.queue.push({ dataset, id });
    this.startQueued();
    return { id };
  }

  async active(dataset: string): Promise<boolean> {
    return this.running.has(dataset) || this.queue.some((q) => q.dataset === dataset);
  }

  /** Datasets whose runs wait for a free slot, in the order they will start. */
  get queued(): string[] {
    return this.queue.map((q) => q.dataset);
  }

  /** Child processes of runs still going. */
  get children(): ChildProcess[] {
    return [...this.running.values()].map((r) => r.child);
  }

  private startQueued(): void {
    while (!this.stopped && this.running.size < this.maxConcurrent && this.queue.length > 0) {
      const { dataset, id } = this.queue.shift() as { dataset: string; id: string };
      const { cmd, args, env, cwd } = this.opts.command(dataset);
      const child = spawn(cmd, args, { env: env ?? process.env, cwd, stdio: this.opts.stdio ?? 'inherit' });
      this.running.set(dataset, { id, child });
      const finish = (code: number | null, signal: NodeJS.Signals | null) => {
        if (this.running.get(dataset)?.child !== child) return;
        this.running.delete(dataset);
        this.emit('exit', { dataset, id, code, signal });
        this.startQueued();
      };
      child.once('exit', finish);
      child.once('error', () => finish(null, null));
      this.emit('start', { dataset, id });
    }
  }

  /** Drops the queued runs and ends every active one (SIGTERM), waiting for them to exit. */
  async stopAll(): Promise<void> {
    this.stopped = true;
    this.queue.length = 0;
    await Promise.all(
      this.children.map(
        (child) =>
          new Promise<void>((resolve) => {
            if (child.exitCode !== null || child.signalCode !== null) return resolve();
            child.once('exit', () => resolve());
            child.kill('SIGTERM');
          }),
      ),
    );
  }
}

export interface LocalTriggerOptions {
  runner: JobRunner;
  clock?: TimerClock;
  quietMs?: number;
  /** Follow-up poll while a run is active; a ChildProcessJobRunner also reports exits directly. Default 5 s. */
  pollMs?: number;
  /** Only events for this bucket count (s3rver emits events for every bucket). */
  bucket?: string;
  log?: (line: string) => void;
  onDecision?: (decision: Decision) => void;
  onError?: (err: unknown, dataset: string) => void;
  /** Retry delay after a failed check (e.g. the job could not be spawned). Default 30 s. */
  retryMs?: number;
}

export interface LocalTrigger {
  trigger: RetrainTrigger;
  /** Feed one S3 notification (`{Records:[...]}`, what s3rver emits on 'event'). */
  handleS3Notification(notification: unknown): Promise<Decision[]>;
  /** Wait until every started check/submission has finished. */
  drain(): Promise<void>;
  close(): void;
}

/** The retrain trigger wired for one process: in-memory state, timers, and the given runner. */
export function createLocalTrigger(opts: LocalTriggerOptions): LocalTrigger {
  const clock = opts.clock ?? systemClock;
  const inflight = new Set<Promise<unknown>>();
  const track = <T>(dataset: string, p: Promise<T>): Promise<T | undefined> => {
    const wrapped = p.then(
      (d) => {
        opts.onDecision?.(d as Decision);
        return d;
      },
      (err) => {
        (opts.onError ?? ((e: unknown) => opts.log?.(`retrain ${dataset}: ${String(e)}`)))(err, dataset);
        void scheduler.schedule(dataset, opts.retryMs ?? 30_000);
        return undefined;
      },
    );
    inflight.add(wrapped);
    void wrapped.finally(() => inflight.delete(wrapped));
    return wrapped;
  };
  const scheduler = new TimerScheduler(clock, (dataset) => void track(dataset, trigger.check(dataset)));
  const trigger = new RetrainTrigger({
    runner: opts.runner,
    clock,
    store: new MemoryStateStore(),
    scheduler,
    quietMs: opts.quietMs,
    pollMs: opts.pollMs ?? 5_000,
    log: opts.log,
  });
  const onExit = (exit: RunExit) => void track(exit.dataset, trigger.check(exit.dataset));
  if (opts.runner instanceof ChildProcessJobRunner) opts.runner.on('exit', onExit);

  return {
    trigger,
    async handleS3Notification(notification) {
      const changes = changesFromS3Notification(notification, opts.bucket);
      const out = await Promise.all(changes.map((c) => track(c.dataset, trigger.onChange(c))));
      return out.filter((d): d is Decision => d !== undefined);
    },
    async drain() {
      while (inflight.size > 0) await Promise.allSettled([...inflight]);
    },
    close() {
      scheduler.close();
      if (opts.runner instanceof ChildProcessJobRunner) opts.runner.off('exit', onExit);
    },
  };
}
