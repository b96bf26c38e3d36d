import type { EpochRecord, Metrics } from '../core/manifest.js';
import type { LayersModel } from '../core/tf.js';
import { tf } from '../core/tf.js';
import { type Checkpoint, loadCheckpoint, type NamedTensor, restoreWeights, saveCheckpoint, trainableWeights } from './checkpoint.js';
import type { Reporter } from './progress.js';

export type Phase = 'frozen' | 'fineTune';

/**
 * The one place that numbers epochs: phase 1 runs global epochs [0, frozen), phase 2 [frozen,
 * frozen + fineTune). Seeds (shuffle order, augmentation draws) take the global index; records
 * and checkpoints count epochs done (global index + 1).
 */
export class EpochPlan {
  constructor(
    readonly frozen: number,
    readonly fineTune: number,
  ) {}

  /** Global index of epoch `e` of `phase` (0-based within the phase). */
  global(phase: Phase, e: number): number {
    return phase === 'frozen' ? e : this.frozen + e;
  }

  /** Epochs done overall once epoch `e` of `phase` is done: its record's `epoch`. */
  done(phase: Phase, e: number): number {
    return this.global(phase, e) + 1;
  }

  /** Epochs of the run up to the end of `phase`: the `epochs` of its progress events. */
  through(phase: Phase): number {
    return phase === 'frozen' ? this.frozen : this.frozen + this.fineTune;
  }

  /** Epochs of `phase` already done when `epochsDone` epochs of the run are. */
  doneIn(phase: Phase, epochsDone: number): number {
    return phase === 'frozen' ? Math.min(epochsDone, this.frozen) : Math.max(0, epochsDone - this.frozen);
  }
}

/** What an epoch hands to finishEpoch: its figures, and how to save what it trained. */
export interface EpochResult {
  loss: number;
  accuracy: number;
  metrics: Metrics;
  seconds: number;
  /** Copies the trained values into the model (before the checkpoint reads them). */
  writeBack(): void;
  /** Model layers whose weights the checkpoint holds. */
  layers: ReadonlySet<string>;
  optimizerWeights(): Promise<NamedTensor[]>;
}

/**
 * One run's resumable state: the history, the phase-1 metrics, and the checkpoint it resumed from
 * (if any) and writes after every epoch.
 */
export class RunState {
  readonly history: EpochRecord[];
  frozenMetrics: Metrics | undefined;
  private resumedOptimizer: { phase: Phase; weights: NamedTensor[] } | undefined;

  private constructor(
    readonly plan: EpochPlan,
    private readonly model: LayersModel,
    private readonly report: Reporter,
    private readonly checkpointUri: string | undefined,
    private readonly runKey: string,
    private readonly resumed: Checkpoint | undefined,
  ) {
    this.history = resumed ? [...resumed.history] : [];
    this.frozenMetrics = resumed?.frozenMetrics;
    this.resumedOptimizer = resumed && { phase: resumed.phase, weights: resumed.optimizer };
  }

  /** Restores the model's weights from a checkpoint of the same run (same `runKey`), if there is one. */
  static async open(
    plan: EpochPlan,
    model: LayersModel,
    report: Reporter,
    checkpointUri: string | undefined,
    runKey: string,
  ): Promise<RunState> {
    const ckpt = checkpointUri ? await loadCheckpoint(checkpointUri, runKey) : undefined;
    if (ckpt) {
      restoreWeights(model, ckpt.weights);
      tf.dispose([...ckpt.weights.values()]);
      report({ type: 'info', message: `resuming from the checkpoint in ${checkpointUri}: ${ckpt.epochsDone} epoch(s) done` });
    }
    return new RunState(plan, model, report, checkpointUri, runKey, ckpt);
  }

  /** Epochs of `phase` done before this process started. */
  doneBefore(phase: Phase): number {
    return this.resumed ? this.plan.doneIn(phase, this.resumed.epochsDone) : 0;
  }

  /** The optimizer state saved in `phase`, handed over once (the caller restores, then disposes it). */
  takeOptimizer(phase: Phase): NamedTensor[] | undefined {
    if (this.resumedOptimizer?.phase !== phase) return undefined;
    const { weights } = this.resumedOptimizer;
    this.resumedOptimizer = undefined;
    return weights;
  }

  /** The end of every epoch: record it, write the weights back, checkpoint, report. */
  async finishEpoch(phase: Phase, e: number, r: EpochResult): Promise<void> {
    const epoch = this.plan.done(phase, e);
    const rec: EpochRecord = {
      phase,
      epoch,
      loss: r.loss,
      accuracy: r.accuracy,
      valLoss: r.metrics.valLoss,
      valAccuracy: r.metrics.valAccuracy,
      seconds: r.seconds,
    };
    if (phase === 'frozen') this.frozenMetrics = r.metrics;
    this.history.push(rec);
    r.writeBack();
    if (this.checkpointUri) {
      const optimizer = await r.optimizerWeights();
      await saveCheckpoint(
        this.checkpointUri,
        { runKey: this.runKey, phase, epochsDone: epoch, history: this.history, frozenMetrics: this.frozenMetrics },
        trainableWeights(this.model, r.layers),
        optimizer,
      );
      // getWeights() hands out the optimizer's live accumulators; only the iteration count is a copy.
      tf.dispose(optimizer.filter((o) => o.name === 'iter').map((o) => o.tensor));
    }
    this.report({ type: 'epoch', ...rec, epochs: this.plan.through(phase) });
  }
}
