import cliProgress from 'cli-progress';

export type TrainEvent =
  | { type: 'info'; message: string }
  | { type: 'warning'; message: string }
  | { type: 'stage'; stage: string; total?: number }
  | { type: 'progress'; stage: string; done: number; total: number; loss?: number; accuracy?: number }
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
    }
  | { type: 'done'; out: string; valAccuracy: number; seconds: number; peakRssMiB?: number }
  | { type: 'error'; message: string };

export type Reporter = (e: TrainEvent) => void;

/** One JSON object per line on stdout, for machines and logs. */
export function jsonReporter(write: (line: string) => void = (l) => process.stdout.write(l + '\n'), progressEveryMs = 1000): Reporter {
  const last = new Map<string, number>();
  return (e) => {
    // Progress is per image: keep at most one line a second per stage, and the last one.
    if (e.type === 'progress' && e.done < e.total) {
      const now = Date.now();
      if (now - (last.get(e.stage) ?? 0) < progressEveryMs) return;
      last.set(e.stage, now);
    }
    write(JSON.stringify({ time: new Date().toISOString(), ...e }));
  };
}

/** Progress bars on a TTY (stage, ETA, loss/accuracy); plain lines otherwise. */
export function humanReporter(stream: NodeJS.WriteStream = process.stderr): Reporter {
  const tty = !!stream.isTTY;
  let bar: cliProgress.SingleBar | undefined;
  const stop = () => {
    bar?.stop();
    bar = undefined;
  };
  const line = (s: string) => {
    stop();
    stream.write(s + '\n');
  };
  return (e) => {
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
              format: `${e.stage.padEnd(28)} {bar} {value}/{total} | ETA {eta_formatted} {metrics}`,
              stream,
              hideCursor: true,
              etaBuffer: 20,
            },
            cliProgress.Presets.shades_classic,
          );
          bar.start(e.total, 0, { metrics: '' });
        } else {
          stream.write(`${e.stage}...\n`);
        }
        return;
      case 'progress':
        bar?.update(e.done, { metrics: e.loss !== undefined ? `loss ${e.loss.toFixed(4)} acc ${(e.accuracy ?? 0).toFixed(4)}` : '' });
        return;
      case 'epoch':
        return line(
          `${e.phase === 'frozen' ? 'frozen   ' : 'fine-tune'} epoch ${String(e.epoch).padStart(2)}/${e.epochs}  loss ${e.loss.toFixed(4)}  acc ${e.accuracy.toFixed(4)}  val_loss ${e.valLoss.toFixed(4)}  val_acc ${e.valAccuracy.toFixed(4)}  (${e.seconds.toFixed(1)} s)`,
        );
      case 'done':
        return line(
          `done in ${e.seconds.toFixed(1)} s${e.peakRssMiB ? ` (peak RSS ${Math.round(e.peakRssMiB)} MiB)` : ''}: validation accuracy ${e.valAccuracy.toFixed(4)}; model in ${e.out}`,
        );
    }
  };
}
