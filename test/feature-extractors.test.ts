import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { initBackend } from '../core/backend.js';
import { buildClassifier, HEAD } from '../core/classifier.js';
import type { RgbImage } from '../core/image.js';
import type { LayersModel } from '../core/tf.js';
import { tf } from '../core/tf.js';
import type { AugmentDraw } from '../training/augment.js';
import { modelArtifacts } from '../training/export.js';
import { InProcessExtractor, PoolExtractor } from '../training/features.js';
import { randomizeBatchNorm } from './helpers/fast-forward-fixtures.js';

const SIZE = 64;
const ALPHA = 0.35;
const BOUNDARY = 'block_13_expand_relu';

function image(seed: number): RgbImage {
  return { data: new Uint8Array(SIZE * SIZE * 3).map((_, i) => (i * 29 + seed * 13 + ((i * seed) >> 4)) % 256), width: SIZE, height: SIZE };
}

const images = Array.from({ length: 6 }, (_, i) => image(i + 1));
const plain = images.map(() => null);
const draws: AugmentDraw[] = images.map((_, i) => ({
  flipH: i % 2 === 0,
  flipV: false,
  angle: 0.1 * i,
  zoom: 1 + 0.05 * i,
  contrast: 1.1,
}));

let model: LayersModel;
let artifacts: tf.io.ModelArtifacts;

beforeAll(async () => {
  await initBackend('wasm', () => {});
  model = buildClassifier({ alpha: ALPHA, inputSize: SIZE, numClasses: 2 });
  randomizeBatchNorm(model);
  artifacts = await modelArtifacts(model);
});

afterAll(() => model?.dispose());

describe('PoolExtractor: one worker pool for both phases', () => {
  it('pooled features and boundary activations from one pass equal single-layer runs, and the pool is started once', async () => {
    const ex = new PoolExtractor({ artifacts, alpha: ALPHA, inputSize: SIZE, workers: 2 });
    try {
      // Phase 1: validation (both layers), then training features; phase 2: augmented boundary views.
      const [pooled, boundary] = await ex.computeLayers(images, plain, [HEAD.pool, BOUNDARY]);
      const trainPooled = await ex.compute(images, plain, HEAD.pool);
      const views = await ex.compute(images, draws, BOUNDARY);
      expect(ex.poolStarts).toBe(1);
      expect(pooled.shape).toEqual([1280]);
      expect(boundary.shape).toEqual([4, 4, 192]);
      expect(boundary.data).toBeInstanceOf(Uint16Array);
      expect(trainPooled.data).toEqual(pooled.data);

      // The old way: a pool for out_relu, then one for the boundary.
      const pooledOnly = new PoolExtractor({ artifacts, alpha: ALPHA, inputSize: SIZE, workers: 2 });
      const boundaryOnly = new PoolExtractor({ artifacts, alpha: ALPHA, inputSize: SIZE, workers: 2 });
      try {
        expect((await pooledOnly.compute(images, plain, HEAD.pool)).data).toEqual(pooled.data);
        expect((await boundaryOnly.compute(images, plain, BOUNDARY)).data).toEqual(boundary.data);
        expect((await boundaryOnly.compute(images, draws, BOUNDARY)).data).toEqual(views.data);
      } finally {
        await pooledOnly.close();
        await boundaryOnly.close();
      }
    } finally {
      await ex.close();
    }
  });

  it('a layer the pool was not started for restarts it once, for both sets of layers', async () => {
    const ex = new PoolExtractor({ artifacts, alpha: ALPHA, inputSize: SIZE, workers: 1 });
    try {
      await ex.compute(images.slice(0, 2), plain.slice(0, 2), HEAD.pool);
      await ex.compute(images.slice(0, 2), plain.slice(0, 2), BOUNDARY);
      await ex.computeLayers(images.slice(0, 2), plain.slice(0, 2), [BOUNDARY, HEAD.pool]);
      expect(ex.poolStarts).toBe(2);
      await expect(ex.computeLayers(images, plain, [BOUNDARY, BOUNDARY])).rejects.toThrow(/distinct/);
    } finally {
      await ex.close();
    }
  });
});

describe('InProcessExtractor', () => {
  it('computeLayers runs one multi-output sub-model whose outputs equal single-layer runs bit for bit, without leaks', async () => {
    const ex = new InProcessExtractor(model, 4);
    const before = tf.memory().numTensors;
    const [pooled, boundary] = await ex.computeLayers(images, draws, [HEAD.pool, BOUNDARY]);
    const p = await ex.compute(images, draws, HEAD.pool);
    const b = await ex.compute(images, draws, BOUNDARY);
    expect(pooled.shape).toEqual([1280]);
    expect(boundary.shape).toEqual([4, 4, 192]);
    expect(pooled.data).toEqual(p.data);
    expect(boundary.data).toEqual(b.data);
    await ex.close();
    expect(tf.memory().numTensors).toBe(before);
  });
});
