import type { EpochRecord, Metrics, PhaseSelection } from '../core/manifest.js';
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
  /** The optimizer's Adam beta powers (adamPowers), so a resumed run steps exactly as this one. */
  optimizerPowers?(): [number, number] | undefined;
}

/** --restore-best and --patience: off (both unset) leaves every phase on its last epoch, as before. */
export interface EarlyStopping {
  restoreBest?: boolean;
  patience?: number;
}

/** A phase's best-epoch tracking: what the manifest records, the best epoch's metrics and (with restoreBest) weights. */
interface Tracker {
  sel: PhaseSelection;
  bestMetrics: Metrics;
  bestWeights: Map<string, tf.Tensor> | undefined;
}

/**
 * One run's resumable state: the history, the phase-1 metrics, and the checkpoint it resumed from
 * (if any) and writes after every epoch.
 */
export class RunState {
  readonly history: EpochRecord[];
  frozenMetrics: Metrics | undefined;
  private resumedOptimizer: { phase: Phase; weights: NamedTensor[] } | undefined;
  private readonly trackers: Partial<Record<Phase, Tracker>> = {};

  private constructor(
    readonly plan: EpochPlan,
    private readonly model: LayersModel,
    private readonly report: Reporter,
    private readonly checkpointUri: string | undefined,
    private readonly runKey: string,
    private readonly resumed: Checkpoint | undefined,
    private readonly early: EarlyStopping,
  ) {
    this.history = resumed ? [...resumed.history] : [];
    this.frozenMetrics = resumed?.frozenMetrics;
    this.resumedOptimizer = resumed && { phase: resumed.phase, weights: resumed.optimizer };
    for (const phase of ['frozen', 'fineTune'] as const) {
      const saved = resumed?.selection?.[phase];
      if (!saved) continue;
      const { bestMetrics, ...sel } = saved;
      // Only the checkpoint's own phase carries best weights; an earlier phase was already restored.
      const bestWeights = phase === resumed.phase && resumed.best.size ? resumed.best : undefined;
      this.trackers[phase] = { sel, bestMetrics, bestWeights };
    }
    if (resumed && !this.trackers[resumed.phase]) tf.dispose([...resumed.best.values()]);
  }

  private get tracking(): boolean {
    return !!this.early.restoreBest || this.early.patience !== undefined;
  }

  /** Restores the model's weights from a checkpoint of the same run (same `runKey`), if there is one. */
  static async open(
    plan: EpochPlan,
    model: LayersModel,
    report: Reporter,
    checkpointUri: string | undefined,
    runKey: string,
    early: EarlyStopping = {},
  ): Promise<RunState> {
    const ckpt = checkpointUri ? await loadCheckpoint(checkpointUri, runKey) : undefined;
    if (ckpt) {
      restoreWeights(model, ckpt.weights);
      tf.dispose([...ckpt.weights.values()]);
      report({ type: 'info', message: `resuming from the checkpoint in ${checkpointUri}: ${ckpt.epochsDone} epoch(s) done` });
    }
    return new RunState(plan, model, report, checkpointUri, runKey, ckpt, early);
  }

  /** Epochs of `phase` done before this process started (all of them once patience stopped it). */
  doneBefore(phase: Phase): number {
    if (this.trackers[phase]?.sel.stoppedEarly) return phase === 'frozen' ? this.plan.frozen : this.plan.fineTune;
    return this.resumed ? this.plan.doneIn(phase, this.resumed.epochsDone) : 0;
  }

  /** Which epoch each phase kept and why; undefined when neither --restore-best nor --patience is on. */
  selection(): { frozen?: PhaseSelection; fineTune?: PhaseSelection } | undefined {
    if (!this.tracking) return undefined;
    return Object.fromEntries(Object.entries(this.trackers).map(([p, t]) => [p, { ...t.sel }]));
  }

  /** Adam's beta powers saved in `phase` (apply after restoring the optimizer's weights). */
  adamPowers(phase: Phase): [number, number] | undefined {
    return this.resumed?.phase === phase ? this.resumed.adamPowers : undefined;
  }

  /** The optimizer state saved in `phase`, handed over once (the caller restores, then disposes it). */
  takeOptimizer(phase: Phase): NamedTensor[] | undefined {
    if (this.resumedOptimizer?.phase !== phase) return undefined;
    const { weights } = this.resumedOptimizer;
    this.resumedOptimizer = undefined;
    return weights;
  }

  /**
   * The end of every epoch: record it, write the weights back, track the best epoch, checkpoint,
   * report. True when --patience says the phase stops here.
   */
  async finishEpoch(phase: Phase, e: number, r: EpochResult): Promise<boolean> {
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
    const stop = this.tracking ? this.track(phase, epoch, r) : false;
    if (this.checkpointUri) {
      const optimizer = await r.optimizerWeights();
      await saveCheckpoint(
        this.checkpointUri,
        {
          runKey: this.runKey,
          phase,
          epochsDone: epoch,
          history: this.history,
          frozenMetrics: this.frozenMetrics,
          adamPowers: r.optimizerPowers?.(),
          selection: this.tracking
            ? Object.fromEntries(Object.entries(this.trackers).map(([p, t]) => [p, { ...t.sel, bestMetrics: t.bestMetrics }]))
            : undefined,
        },
        trainableWeights(this.model, r.layers),
        optimizer,
        this.trackers[phase]?.bestWeights,
      );
      // getWeights() hands out the optimizer's live accumulators; only the iteration count is a copy.
      tf.dispose(optimizer.filter((o) => o.name === 'iter').map((o) => o.tensor));
    }
    this.report({ type: 'epoch', ...rec, epochs: this.plan.through(phase) });
    if (stop) {
      const t = this.trackers[phase] as Tracker;
      this.report({
        type: 'info',
        message: `${phase === 'frozen' ? 'phase 1' : 'phase 2'}: no lower validation loss for ${t.sel.sinceBest} epoch(s) (patience ${this.early.patience}): stopping after epoch ${epoch}`,
      });
    }
    return stop;
  }

  /** Best-epoch bookkeeping after epoch `epoch` (a global epoch number) of `phase`; true when patience is exhausted. */
  private track(phase: Phase, epoch: number, r: EpochResult): boolean {
    const { restoreBest = false, patience } = this.early;
    let t = this.trackers[phase];
    // Strictly lower, as Keras' EarlyStopping (min_delta 0): a tie keeps the earlier epoch.
    const improved = !t || r.metrics.valLoss < t.sel.bestValLoss;
    if (improved) {
      if (t?.bestWeights) tf.dispose([...t.bestWeights.values()]);
      // Clones share the variables' current buffers; training assigns new ones, so these keep this epoch's values.
      const bestWeights = restoreBest ? new Map([...trainableWeights(this.model, r.layers)].map(([k, v]) => [k, tf.clone(v)])) : undefined;
      t = {
        sel: {
          monitor: 'valLoss',
          restoreBest,
          patience,
          bestEpoch: epoch,
          bestValLoss: r.metrics.valLoss,
          lastEpoch: epoch,
          keptEpoch: epoch,
          sinceBest: 0,
          stoppedEarly: false,
          reason: '',
        },
        bestMetrics: r.metrics,
        bestWeights,
      };
      this.trackers[phase] = t;
    } else {
      t = t as Tracker;
      t.sel.sinceBest++;
      t.sel.lastEpoch = epoch;
    }
    const last = epoch === this.plan.through(phase);
    t.sel.stoppedEarly = patience !== undefined && t.sel.sinceBest >= patience && !last;
    t.sel.keptEpoch = restoreBest ? t.sel.bestEpoch : epoch;
    t.sel.reason = reasonOf(t.sel);
    return t.sel.stoppedEarly;
  }

  /**
   * The end of a phase: with --restore-best, the model gets the phase's best weights back. Returns
   * the metrics of the epoch kept (`last` when nothing is tracked).
   */
  endPhase(phase: Phase, last: Metrics): Metrics {
    const t = this.trackers[phase];
    if (!t) return last;
    let kept = last;
    if (t.sel.restoreBest) {
      if (t.bestWeights) {
        restoreWeights(this.model, t.bestWeights);
        tf.dispose([...t.bestWeights.values()]);
        t.bestWeights = undefined;
      }
      kept = t.bestMetrics;
      if (t.sel.bestEpoch !== t.sel.lastEpoch) {
        this.report({ type: 'info', message: `${phase === 'frozen' ? 'phase 1' : 'phase 2'}: ${t.sel.reason}` });
      }
    }
    if (phase === 'frozen') this.frozenMetrics = kept;
    return kept;
  }

  /** Releases best-weight copies still held (a run that failed before its phase ended). */
  dispose(): void {
    for (const t of Object.values(this.trackers)) {
      if (t.bestWeights) tf.dispose([...t.bestWeights.values()]);
      t.bestWeights = undefined;
    }
  }
}

function reasonOf(s: PhaseSelection): string {
  const stop = s.stoppedEarly
    ? `stopped after epoch ${s.lastEpoch} (${s.sinceBest} epoch(s) without a lower validation loss, patience ${s.patience})`
    : `ran to epoch ${s.lastEpoch}`;
  const kept = s.restoreBest
    ? `kept epoch ${s.bestEpoch}, the lowest validation loss (${s.bestValLoss.toFixed(4)})`
    : `kept the last epoch ${s.lastEpoch} (no --restore-best; best validation loss ${s.bestValLoss.toFixed(4)} at epoch ${s.bestEpoch})`;
  return `${stop}; ${kept}`;
}
