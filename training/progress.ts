import cliProgress from 'cli-progress';

export type TrainEvent =
  | { type: 'info'; message: string }
  | { type: 'warning'; message: string }
  | { type: 'stage'; stage: string; total?: number }
  | {
      type: 'progress';
      stage: string;
      done: number;
      total: number;
      loss?: number;
      accuracy?: number;
      /** Items (images, views, steps) per second since the stage started; set by the reporters (ProgressClock). */
      rate?: number;
      /** Seconds left in the stage at that rate. */
      etaSeconds?: number;
    }
  | {
      type: 'epoch';
      phase: 'frozen' | 'fineTune';
      epoch: number;
      epochs: number;
      loss: number;
      accuracy: number;
      valLoss: number;
      valAccuracy: number;
      seconds: number;
      /** Seconds left in this phase at the mean epoch time so far; set by the reporters (ProgressClock). */
      etaSeconds?: number;
    }
  | { type: 'done'; out: string; valAccuracy: number; seconds: number; peakRssMiB?: number }
  | { type: 'error'; message: string };

export type Reporter = (e: TrainEvent) => void;

/** 42 s, 3 min 05 s, 1 h 02 min. */
export function formatDuration(s: number): string {
  if (!Number.isFinite(s) || s < 0) return '?';
  if (s < 60) return `${Math.round(s)} s`;
  if (s < 3600) return `${Math.floor(s / 60)} min ${String(Math.round(s % 60)).padStart(2, '0')} s`;
  return `${Math.floor(s / 3600)} h ${String(Math.floor((s % 3600) / 60)).padStart(2, '0')} min`;
}

/**
 * Adds rate and ETA to progress and epoch events. A stage's clock starts at its `stage` event (or
 * its first progress event, counting from there) and restarts when its count goes back; the
 * rate is the mean since the start, so it settles rather than jumps.
 */
export class ProgressClock {
  private stageAt: number | undefined;
  private readonly starts = new Map<string, { t: number; done: number; last: number }>();
  private readonly epochSeconds = new Map<string, number[]>();

  constructor(private readonly now: () => number = () => performance.now()) {}

  enrich(e: TrainEvent): TrainEvent {
    if (e.type === 'stage') {
      this.stageAt = this.now();
      this.starts.clear();
      return e;
    }
    if (e.type === 'epoch') {
      const key = e.phase;
      const secs = this.epochSeconds.get(key) ?? [];
      if (e.epoch <= 1) secs.length = 0;
      secs.push(e.seconds);
      this.epochSeconds.set(key, secs);
      const mean = secs.reduce((a, b) => a + b, 0) / secs.length;
      return { ...e, etaSeconds: Math.max(0, e.epochs - e.epoch) * mean };
    }
    if (e.type !== 'progress') return e;
    const t = this.now();
    let start = this.starts.get(e.stage);
    if (!start || e.done < start.last) {
      start = this.stageAt !== undefined && !start ? { t: this.stageAt, done: 0, last: e.done } : { t, done: e.done, last: e.done };
      this.starts.set(e.stage, start);
    }
    start.last = e.done;
    const elapsed = (t - start.t) / 1000;
    const progressed = e.done - start.done;
    if (!(elapsed > 0 && progressed > 0)) return e;
    const rate = progressed / elapsed;
    return { ...e, rate, etaSeconds: Math.max(0, e.total - e.done) / rate };
  }
}

/** One JSON object per line on stdout, for machines and logs. */
export function jsonReporter(write: (line: string) => void = (l) => process.stdout.write(l + '\n'), progressEveryMs = 1000): Reporter {
  const last = new Map<string, number>();
  const clock = new ProgressClock();
  return (event) => {
    const e = clock.enrich(event);
    // Progress is per image: keep at most one line a second per stage, and the last one.
    if (e.type === 'progress' && e.done < e.total) {
      const now = Date.now();
      if (now - (last.get(e.stage) ?? 0) < progressEveryMs) return;
      last.set(e.stage, now);
    }
    write(JSON.stringify({ time: new Date().toISOString(), ...e }));
  };
}

/**
 * Progress bars on a TTY (stage, rate, ETA, loss/accuracy); plain lines otherwise, with a progress
 * line at most every `plainEveryMs` per stage.
 */
export function humanReporter(stream: NodeJS.WriteStream = process.stderr, plainEveryMs = 10_000): Reporter {
  const tty = !!stream.isTTY;
  const clock = new ProgressClock();
  const lastPlain = new Map<string, number>();
  let bar: cliProgress.SingleBar | undefined;
  const stop = () => {
    bar?.stop();
    bar = undefined;
  };
  const line = (s: string) => {
    stop();
    stream.write(s + '\n');
  };
  const speed = (e: { rate?: number; etaSeconds?: number }) =>
    e.rate === undefined ? '' : `${e.rate >= 10 ? e.rate.toFixed(0) : e.rate.toFixed(1)}/s, ETA ${formatDuration(e.etaSeconds ?? 0)}`;
  return (event) => {
    const e = clock.enrich(event);
    switch (e.type) {
      case 'info':
        return line(e.message);
      case 'warning':
        return line(`WARNING: ${e.message}`);
      case 'error':
        return line(`error: ${e.message}`);
      case 'stage':
        stop();
        if (tty && e.total) {
          bar = new cliProgress.SingleBar(
            {
              format: `${e.stage.padEnd(28)} {bar} {value}/{total} | {speed} {metrics}`,
              stream,
              hideCursor: true,
              etaBuffer: 20,
            },
            cliProgress.Presets.shades_classic,
          );
          bar.start(e.total, 0, { metrics: '', speed: '' });
        } else {
          stream.write(`${e.stage}...\n`);
        }
        return;
      case 'progress': {
        const metrics = e.loss !== undefined ? `loss ${e.loss.toFixed(4)} acc ${(e.accuracy ?? 0).toFixed(4)}` : '';
        if (bar) return bar.update(e.done, { metrics, speed: speed(e) });
        if (tty || e.done >= e.total || e.rate === undefined) return;
        const now = Date.now();
        if (now - (lastPlain.get(e.stage) ?? now - plainEveryMs) < plainEveryMs) return;
        lastPlain.set(e.stage, now);
        stream.write(`  ${e.stage} ${e.done}/${e.total} (${speed(e)})${metrics ? ` ${metrics}` : ''}\n`);
        return;
      }
      case 'epoch':
        return line(
          `${e.phase === 'frozen' ? 'frozen   ' : 'fine-tune'} epoch ${String(e.epoch).padStart(2)}/${e.epochs}  loss ${e.loss.toFixed(4)}  acc ${e.accuracy.toFixed(4)}  val_loss ${e.valLoss.toFixed(4)}  val_acc ${e.valAccuracy.toFixed(4)}  (${e.seconds.toFixed(1)} s${e.etaSeconds ? `, phase ETA ${formatDuration(e.etaSeconds)}` : ''})`,
        );
      case 'done':
        return line(
          `done in ${e.seconds.toFixed(1)} s${e.peakRssMiB ? ` (peak RSS ${Math.round(e.peakRssMiB)} MiB)` : ''}: validation accuracy ${e.valAccuracy.toFixed(4)}; model in ${e.out}`,
        );
    }
  };
}
