import { mkdtemp } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { initBackend } from '../core/backend.js';
import type { Metrics } from '../core/manifest.js';
import { tf } from '../core/tf.js';
import { type DatasetListing, splitDataset } from '../training/dataset.js';
import type { TrainEvent } from '../training/progress.js';
import { EpochPlan, RunState } from '../training/run-state.js';

// Best-epoch tracking (--restore-best, --patience) on a one-layer model whose weight is the epoch
// number, so which epoch was kept can be read off the weights; and the --test-split cut.

const metrics = (valLoss: number): Metrics => ({ valAccuracy: 1 - valLoss, valLoss, perClass: [], confusion: [] });

function oneLayer(): tf.LayersModel {
  const model = tf.sequential({ layers: [tf.layers.dense({ units: 1, inputShape: [1], name: 'logits', useBias: false })] });
  return model;
}

const weightOf = (m: tf.LayersModel) => (m.getLayer('logits').getWeights()[0].dataSync() as Float32Array)[0];

/** Runs `losses` as phase-1 epochs from `first`, the weight set to the epoch's global index + 1; returns the epochs run. */
async function runEpochs(state: RunState, model: tf.LayersModel, losses: number[], first = state.doneBefore('frozen')): Promise<number[]> {
  const ran: number[] = [];
  for (let e = first; e < losses.length; e++) {
    const stop = await state.finishEpoch('frozen', e, {
      loss: losses[e],
      accuracy: 0,
      metrics: metrics(losses[e]),
      seconds: 0,
      writeBack: () => {
        const w = tf.tensor2d([[e + 1]]);
        model.getLayer('logits').setWeights([w]);
        w.dispose();
      },
      layers: new Set(['logits']),
      optimizerWeights: async () => [],
    });
    ran.push(e + 1);
    if (stop) break;
  }
  return ran;
}

describe('restore-best and patience (RunState)', () => {
  beforeAll(async () => {
    await initBackend();
  });
  const losses = [0.9, 0.5, 0.6, 0.55, 0.4, 0.3];

  it('off: every epoch runs, the last epoch is kept, no selection recorded', async () => {
    const model = oneLayer();
    const state = await RunState.open(new EpochPlan(losses.length, 0), model, () => {}, undefined, 'k');
    expect(await runEpochs(state, model, losses)).toEqual([1, 2, 3, 4, 5, 6]);
    expect(state.endPhase('frozen', metrics(0.3)).valLoss).toBe(0.3);
    expect(weightOf(model)).toBe(6);
    expect(state.selection()).toBeUndefined();
    model.dispose();
  });

  it('patience 2 stops two epochs after the best; restore-best puts the best epoch back, and says so', async () => {
    const model = oneLayer();
    const before = tf.memory().numTensors;
    const events: TrainEvent[] = [];
    const state = await RunState.open(new EpochPlan(losses.length, 0), model, (e) => events.push(e), undefined, 'k', {
      restoreBest: true,
      patience: 2,
    });
    expect(await runEpochs(state, model, losses)).toEqual([1, 2, 3, 4]);
    expect(weightOf(model)).toBe(4);
    const kept = state.endPhase('frozen', metrics(0.55));
    expect(weightOf(model)).toBe(2);
    expect(kept.valLoss).toBe(0.5);
    expect(state.frozenMetrics?.valLoss).toBe(0.5);
    const sel = state.selection()?.frozen;
    expect(sel).toMatchObject({
      bestEpoch: 2,
      lastEpoch: 4,
      keptEpoch: 2,
      sinceBest: 2,
      stoppedEarly: true,
      restoreBest: true,
      patience: 2,
    });
    expect(sel?.reason).toMatch(/stopped after epoch 4.*kept epoch 2/);
    expect(events.some((e) => e.type === 'info' && /stopping after epoch 4/.test(e.message))).toBe(true);
    // The best copy was released at endPhase.
    expect(tf.memory().numTensors).toBe(before);
    state.dispose();
    model.dispose();
  });

  it('patience without restore-best keeps the last epoch; restore-best without patience runs to the end', async () => {
    const m1 = oneLayer();
    const s1 = await RunState.open(new EpochPlan(losses.length, 0), m1, () => {}, undefined, 'k', { patience: 1 });
    expect(await runEpochs(s1, m1, losses)).toEqual([1, 2, 3]);
    s1.endPhase('frozen', metrics(0.6));
    expect(weightOf(m1)).toBe(3);
    expect(s1.selection()?.frozen).toMatchObject({ keptEpoch: 3, bestEpoch: 2, stoppedEarly: true });

    const m2 = oneLayer();
    const s2 = await RunState.open(new EpochPlan(losses.length, 0), m2, () => {}, undefined, 'k', { restoreBest: true });
    expect(await runEpochs(s2, m2, [0.5, 0.4, 0.45, 0.41])).toEqual([1, 2, 3, 4]);
    s2.endPhase('frozen', metrics(0.41));
    expect(weightOf(m2)).toBe(2);
    expect(s2.selection()?.frozen).toMatchObject({ keptEpoch: 2, lastEpoch: 4, stoppedEarly: false });
    m1.dispose();
    m2.dispose();
  });

  it('a run resumed from its checkpoint decides exactly as the uninterrupted one (best weights and counter restored)', async () => {
    const early = { restoreBest: true, patience: 2 };
    const uri = await mkdtemp(path.join(os.tmpdir(), 'edgetune-best-'));
    const plan = new EpochPlan(losses.length, 0);
    // Interrupted after epoch 3 (the best was epoch 2, one epoch since).
    const a = oneLayer();
    const sa = await RunState.open(plan, a, () => {}, uri, 'k', early);
    expect(await runEpochs(sa, a, losses.slice(0, 3))).toEqual([1, 2, 3]);
    sa.dispose();
    a.dispose();
    // A new process: weights of epoch 3 from the checkpoint, the best (epoch 2) and the counter too.
    const b = oneLayer();
    const sb = await RunState.open(plan, b, () => {}, uri, 'k', early);
    expect(weightOf(b)).toBe(3);
    expect(sb.doneBefore('frozen')).toBe(3);
    expect(await runEpochs(sb, b, losses)).toEqual([4]);
    sb.endPhase('frozen', metrics(0.55));
    expect(weightOf(b)).toBe(2);
    expect(sb.selection()?.frozen).toMatchObject({ bestEpoch: 2, lastEpoch: 4, keptEpoch: 2, stoppedEarly: true });
    expect(sb.history.map((h) => h.epoch)).toEqual([1, 2, 3, 4]);
    // Killed after the stop but before the end: a third process runs no epoch and still restores epoch 2.
    const c = oneLayer();
    const sc = await RunState.open(plan, c, () => {}, uri, 'k', early);
    expect(sc.doneBefore('frozen')).toBe(losses.length);
    sc.endPhase('frozen', metrics(0.55));
    expect(weightOf(c)).toBe(2);
    b.dispose();
    c.dispose();
  });
});

describe('--test-split', () => {
  const listing: DatasetListing = {
    root: '/x',
    classes: ['a', 'b'],
    files: Array.from({ length: 50 }, (_, i) => ({
      relPath: `${i < 30 ? 'a' : 'b'}/${i}.jpg`,
      absPath: `/x/${i}.jpg`,
      label: i < 30 ? 0 : 1,
    })),
  };

  it('leaves the validation split as it was and cuts the test split from the training share', () => {
    for (const stratified of [false, true]) {
      const plain = splitDataset(listing, { validationSplit: 0.2, seed: 7, stratified });
      const withTest = splitDataset(listing, { validationSplit: 0.2, testSplit: 0.2, seed: 7, stratified });
      expect(plain.test).toEqual([]);
      expect(withTest.validation).toEqual(plain.validation);
      expect(withTest.test).toHaveLength(10);
      const names = (fs: { relPath: string }[]) => fs.map((f) => f.relPath);
      expect(new Set([...names(withTest.train), ...names(withTest.test)])).toEqual(new Set(names(plain.train)));
      expect(names(withTest.train).some((n) => names(withTest.test).includes(n))).toBe(false);
      if (stratified) expect(withTest.test.filter((f) => f.label === 0)).toHaveLength(6);
    }
  });

  it('refuses a test split that leaves nothing to train on, or one too small to hold an image', () => {
    expect(() => splitDataset(listing, { validationSplit: 0.5, testSplit: 0.5, seed: 1 })).toThrow(/test split/);
    const tiny = { ...listing, files: listing.files.slice(25, 35) };
    expect(() => splitDataset(tiny, { validationSplit: 0.2, testSplit: 0.05, seed: 1 })).toThrow(/too few images .* test split/);
  });
});
