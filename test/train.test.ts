import { existsSync } from 'node:fs';
import { mkdtemp, readFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { initBackend } from '../core/backend.js';
import { ManifestSchema, VerificationSchema } from '../core/manifest.js';
import { loadModel } from '../core/model-loader.js';
import { tf } from '../core/tf.js';
import { evaluateModel } from '../training/evaluate.js';
import { runTraining } from '../training/job.js';
import { resolveTrainOptions } from '../training/options.js';
import type { TrainEvent } from '../training/progress.js';
import { makeDataset } from './helpers/images.js';

// A tiny end-to-end run on generated images, with the offline fallback weights (nsfwjs, alpha 1.0),
// both phases, the worker pool and the report: seconds, not minutes.
describe('edgetune train (tiny, end to end)', () => {
  let root: string;
  let out: string;
  const events: TrainEvent[] = [];
  let tensorsBefore = 0;

  beforeAll(async () => {
    process.env.EDGETUNE_OFFLINE = '1';
    delete process.env.EDGETUNE_BASE_WEIGHTS;
    await initBackend();
    const dir = await mkdtemp(path.join(os.tmpdir(), 'edgetune-train-'));
    root = await makeDataset(path.join(dir, 'data'), { red: 14, blue: 14 }, 40);
    out = path.join(dir, 'model');
    tensorsBefore = tf.memory().numTensors;
    const opts = resolveTrainOptions({
      data: root,
      out,
      imageSize: 32,
      batchSize: 8,
      epochs: 3,
      fineTuneEpochs: 2,
      fineTuneAt: 120,
      workers: 1,
      rotation: 0.1,
    });
    const { model } = await runTraining(opts, (e) => events.push(e));
    model.dispose();
  }, 300_000);

  it('writes a complete model folder with a valid manifest', async () => {
    for (const f of [
      'model.json',
      'weights.bin',
      'manifest.json',
      'verification.json',
      'report/index.html',
      'report/accuracy.png',
      'report/loss.svg',
      'report/confusion.png',
    ]) {
      expect(existsSync(path.join(out, f)), f).toBe(true);
    }
    const manifest = ManifestSchema.parse(JSON.parse(await readFile(path.join(out, 'manifest.json'), 'utf8')));
    expect(manifest.classes).toEqual(['blue', 'red']);
    expect(manifest.output).toBe('sigmoid');
    expect(manifest.input.size).toBe(32);
    expect(manifest.backbone.weights.kind).toBe('nsfwjs');
    expect(manifest.backbone.weights.warning).toMatch(/re-trained/);
    expect(manifest.history.map((h) => `${h.phase}:${h.epoch}`)).toEqual(['frozen:1', 'frozen:2', 'frozen:3', 'fineTune:4', 'fineTune:5']);
    expect(manifest.metrics.fineTuned?.confusion.flat().reduce((a, b) => a + b, 0)).toBe(manifest.dataset.counts.validation);
    expect(manifest.metrics.fineTuned?.auc).toBeTypeOf('number');
    expect(manifest.dataset.counts.train + manifest.dataset.counts.validation).toBe(28);
    expect(manifest.dataset.fingerprint).toMatch(/^[0-9a-f]{64}$/);
    VerificationSchema.parse(JSON.parse(await readFile(path.join(out, 'verification.json'), 'utf8')));
  });

  it('learns the generated task', async () => {
    const manifest = ManifestSchema.parse(JSON.parse(await readFile(path.join(out, 'manifest.json'), 'utf8')));
    expect(manifest.metrics.fineTuned!.valAccuracy).toBeGreaterThanOrEqual(0.8);
  });

  it('reports progress events and no leaked tensors', () => {
    expect(events.filter((e) => e.type === 'epoch')).toHaveLength(5);
    expect(events.at(-1)?.type).toBe('done');
    expect(events.some((e) => e.type === 'warning' && /nsfwjs/.test(e.message))).toBe(true);
    expect(tf.memory().numTensors).toBe(tensorsBefore);
  });

  it('keeps BatchNorm moving statistics of the base unchanged (inference mode in both phases)', async () => {
    const { readBaseWeights } = await import('../core/weights/index.js');
    const source = await readBaseWeights('nsfwjs', () => {});
    const { model } = await loadModel(out);
    let checked = 0;
    for (const layer of model.layers.filter((l) => l.getClassName() === 'BatchNormalization')) {
      const [, , mean, variance] = layer.getWeights();
      const srcMean = source.weights.get(`${layer.name}/moving_mean`)!.values;
      const srcVar = source.weights.get(`${layer.name}/moving_variance`)!.values;
      expect(Array.from(mean.dataSync())).toEqual(Array.from(srcMean));
      expect(Array.from(variance.dataSync())).toEqual(Array.from(srcVar));
      checked++;
    }
    expect(checked).toBe(52);
    model.dispose();
  });

  it("evaluate reproduces the training run's figures on the same images", async () => {
    const e = await evaluateModel(out, root);
    expect(e.images).toBe(28);
    expect(e.metrics.valAccuracy).toBeGreaterThanOrEqual(0.8);
  });
});

describe('edgetune train with more than two classes', () => {
  it('trains a softmax head and evaluates per class', async () => {
    process.env.EDGETUNE_OFFLINE = '1';
    delete process.env.EDGETUNE_BASE_WEIGHTS;
    await initBackend();
    const dir = await mkdtemp(path.join(os.tmpdir(), 'edgetune-train3-'));
    const data = await makeDataset(path.join(dir, 'data'), { a: 8, b: 8, c: 8 }, 36);
    const out = path.join(dir, 'model');
    const before = tf.memory().numTensors;
    const opts = resolveTrainOptions({
      data,
      out,
      imageSize: 32,
      batchSize: 8,
      epochs: 4,
      fineTuneEpochs: 1,
      workers: 0,
      stratified: true,
      validationSplit: 0.25,
    });
    const { manifest, model } = await runTraining(opts, () => {});
    model.dispose();
    expect(tf.memory().numTensors).toBe(before);
    expect(manifest.output).toBe('softmax');
    expect(manifest.classes).toEqual(['a', 'b', 'c']);
    expect(manifest.dataset.counts.validation).toBe(6);
    const m = manifest.metrics.fineTuned!;
    expect(m.confusion).toHaveLength(3);
    expect(m.perClass.map((c) => c.support)).toEqual([2, 2, 2]);
    expect(m.auc).toBeUndefined();
    // The export writes the serving graph onnxruntime serves (test/serving-onnx.test.ts checks its record).
    expect(manifest.serving?.onnx).toMatchObject({ file: 'serving.onnx', inputShape: [32, 32, 3], weights: 'float32' });
    expect((await readFile(path.join(out, 'serving.onnx'))).byteLength).toBe(manifest.serving?.onnx.bytes);
    const loaded = await loadModel(out);
    const p = tf.tidy(() => (loaded.model.predict(tf.zeros([2, 32, 32, 3])) as tf.Tensor).arraySync() as number[][]);
    for (const row of p) expect(row.reduce((a, b) => a + b, 0)).toBeCloseTo(1, 5);
    loaded.model.dispose();
  }, 180_000);
});

describe('reproducibility', () => {
  it('the same seed gives the same run: split, views, initial head, dropout masks', async () => {
    process.env.EDGETUNE_OFFLINE = '1';
    delete process.env.EDGETUNE_BASE_WEIGHTS;
    await initBackend();
    const dir = await mkdtemp(path.join(os.tmpdir(), 'edgetune-repro-'));
    const data = await makeDataset(path.join(dir, 'data'), { x: 10, y: 10 }, 36);
    const run = async (out: string, seed: number) => {
      const opts = resolveTrainOptions({
        data,
        out: path.join(dir, out),
        imageSize: 32,
        batchSize: 8,
        epochs: 2,
        fineTuneEpochs: 1,
        workers: 0,
        rotation: 0.1,
        seed,
      });
      const { manifest, model } = await runTraining(opts, () => {});
      model.dispose();
      return manifest.history.map((h) => [h.loss, h.valLoss]);
    };
    const a = await run('a', 5);
    expect(await run('b', 5)).toEqual(a);
    expect(await run('c', 6)).not.toEqual(a);
  }, 180_000);
});

describe('augmented phase 1 with cycled view sets', () => {
  it('computes --frozen-views sets once and cycles them over the epochs', async () => {
    process.env.EDGETUNE_OFFLINE = '1';
    delete process.env.EDGETUNE_BASE_WEIGHTS;
    await initBackend();
    const dir = await mkdtemp(path.join(os.tmpdir(), 'edgetune-views-'));
    const data = await makeDataset(path.join(dir, 'data'), { x: 8, y: 8 }, 36);
    const stages = async (extra: Partial<Parameters<typeof resolveTrainOptions>[0]>) => {
      const events: TrainEvent[] = [];
      const opts = resolveTrainOptions({
        data,
        out: path.join(dir, `m${Math.random()}`),
        imageSize: 32,
        batchSize: 8,
        epochs: 5,
        fineTuneEpochs: 0,
        workers: 0,
        ...extra,
      });
      const { model } = await runTraining(opts, (e) => events.push(e));
      model.dispose();
      return events.filter((e) => e.type === 'stage' && e.stage.startsWith('features (epoch')).map((e) => (e as { stage: string }).stage);
    };
    expect(await stages({ augmentFrozen: true, frozenViews: 2 })).toEqual(['features (epoch 1)', 'features (epoch 2)']);
    expect(await stages({ augmentFrozen: true })).toHaveLength(5);
    expect(await stages({ augmentFrozen: false })).toEqual(['features (epoch 1)']);
  }, 180_000);
});
