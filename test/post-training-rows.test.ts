import { mkdtemp, readFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { initBackend } from '../core/backend.js';
import { HEAD } from '../core/classifier.js';
import { ortGemmUnavailable } from '../core/engine/ort-gemm.js';
import { createFastForward } from '../core/fast-forward.js';
import { decodeImage } from '../core/image.js';
import { loadModel } from '../core/model-loader.js';
import { decodeOpenSetStats, openSetDistance } from '../core/open-set-score.js';
import { tf } from '../core/tf.js';
import type { AugmentDraw } from '../training/augment.js';
import { type FeatureExtractor, InProcessExtractor } from '../training/features.js';
import { resolveTrainOptions } from '../training/options.js';
import { type TrainResult, train } from '../training/train.js';
import { makeDataset } from './helpers/images.js';

/** One frozen-layer pass: which layers, how many views, how many of them augmented. */
interface Pass {
  layers: string[];
  rows: number;
  augmented: number;
}

/** An in-process extractor that records every pass into `passes`. */
function countingExtractor(passes: Pass[]): (model: tf.LayersModel) => Promise<FeatureExtractor> {
  return async (model) => {
    const inner = new InProcessExtractor(model);
    const note = (layers: string[], draws: readonly (AugmentDraw | null)[]) =>
      passes.push({ layers, rows: draws.length, augmented: draws.filter(Boolean).length });
    return {
      description: inner.description,
      compute: (images, draws, layer, onProgress) => {
        note([layer], draws);
        return inner.compute(images, draws, layer, onProgress);
      },
      computeLayers: (images, draws, layers, onProgress) => {
        note([...layers], draws);
        return inner.computeLayers(images, draws, layers, onProgress);
      },
      close: () => inner.close(),
    };
  };
}

/** Options of a small in-process run on a fresh synthetic dataset (32 px, 2 + n epochs). */
async function smallRun(tag: string, counts: Record<string, number>, options: Partial<Parameters<typeof resolveTrainOptions>[0]>) {
  process.env.EDGETUNE_OFFLINE = '1';
  delete process.env.EDGETUNE_BASE_WEIGHTS;
  await initBackend();
  const dir = await mkdtemp(path.join(os.tmpdir(), tag));
  const data = await makeDataset(path.join(dir, 'data'), counts, 40);
  return resolveTrainOptions({
    data,
    out: path.join(dir, 'model'),
    imageSize: 32,
    batchSize: 8,
    epochs: 2,
    workers: 0,
    rotation: 0.1,
    ...options,
  });
}

// The post-training pass scores the un-augmented training rows phase 1 kept instead of running the
// frozen layers over the training images again: fewer frozen-layer views, and the same rows (each
// photo's open-set distance is what its own pooled embedding through the saved model gives).
describe('post-training on the rows phase 1 kept', () => {
  let result: TrainResult;
  const views: Pass[] = [];
  const EPOCHS = 2;

  beforeAll(async () => {
    const opts = await smallRun('edgetune-post-rows-', { red: 10, blue: 10 }, { fineTuneEpochs: EPOCHS, seed: 3 });
    result = await train(opts, () => {}, countingExtractor(views));
  }, 300_000);

  it('runs the frozen layers over each un-augmented training image once (phase 1), never after the phases', () => {
    const { train: nTrain, validation: nVal } = result.manifest.dataset.counts;
    const plain = views.filter((v) => v.augmented === 0).reduce((a, v) => a + v.rows, 0);
    const augmented = views.reduce((a, v) => a + v.augmented, 0);
    expect(plain).toBe(nVal + nTrain);
    expect(augmented).toBe(EPOCHS * nTrain);
    // Phase 1's pass produced the boundary rows as well as the pooled features.
    expect(views.some((v) => v.augmented === 0 && v.rows === nTrain && v.layers.length === 2)).toBe(true);
  });

  it('gives each training photo in the review the open-set distance of its own embedding through the saved model', async () => {
    const m = result.manifest;
    // Where onnxruntime loads, the pass ran the trained tail there (post-training.ts ortScorer):
    // the saved model on tfjs below is the independent check of its embeddings.
    expect(m.engine?.tail).toMatch(ortGemmUnavailable() ? /XNNPACK/ : /products on onnxruntime/);
    const openSet = m.openSet!;
    const stats = decodeOpenSetStats(openSet, m.classes.length);
    const photos = result.review.highestLoss;
    expect(photos.length).toBeGreaterThan(3);
    const { model } = await loadModel(result.outDir);
    const ff = createFastForward(model);
    try {
      for (const p of photos) {
        const img = await decodeImage(await readFile(path.join(result.dataDir, p.path)), { size: 32 });
        const emb = tf.tidy(() => ff.forward(tf.tensor4d(img.data, [1, 32, 32, 3], 'float32'), { to: HEAD.pool }).dataSync());
        expect(openSetDistance(emb, stats).distance).toBeCloseTo(p.distance, 4);
      }
    } finally {
      ff.dispose();
      model.dispose();
      result.model.dispose();
      result.close();
    }
  }, 120_000);
});

// With augmented phase-1 views (the keras recipe) no un-augmented training rows exist before phase
// 2: its last epoch, which has no next epoch's views to compute, has the workers compute them, so
// post-training only scores.
describe('post-training rows computed during the last fine-tune epoch', () => {
  it('runs one un-augmented boundary pass over the training images, within phase 2, and none after', async () => {
    const opts = await smallRun('edgetune-post-last-', { red: 8, blue: 8 }, { fineTuneEpochs: 2, augmentFrozen: true, seed: 5 });
    const calls: Pass[] = [];
    // The extractor's calls and the run's stages, in the order they happened.
    let postStage = -1;
    const r = await train(
      opts,
      (e) => {
        if (e.type === 'stage' && e.stage.startsWith('features (training images, after training)')) postStage = calls.length;
      },
      countingExtractor(calls),
    );
    try {
      const nTrain = r.manifest.dataset.counts.train;
      const plainTraining = calls.filter((c) => c.augmented === 0 && c.rows === nTrain);
      expect(plainTraining).toHaveLength(1);
      expect(plainTraining[0].layers).toEqual(['block_13_expand_relu']);
      // Issued after the last fine-tune views were (when no next epoch's views are due), before post-training.
      const lastViews = calls.map((c) => c.augmented === nTrain && c.layers[0] === 'block_13_expand_relu').lastIndexOf(true);
      const at = calls.indexOf(plainTraining[0]);
      expect(at).toBeGreaterThan(lastViews);
      expect(postStage).toBeGreaterThan(at);
      expect(r.review.highestLoss.length).toBeGreaterThan(0);
    } finally {
      r.model.dispose();
      r.close();
    }
  }, 300_000);
});
