import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdtemp, readFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { initBackend } from '../core/backend.js';
import { buildClassifier, HEAD } from '../core/classifier.js';
import { toProbabilities } from '../core/head-convention.js';
import type { LayersModel } from '../core/tf.js';
import { tf } from '../core/tf.js';
import type { AugmentDraw } from '../training/augment.js';
import { CacheBudget, type RunCache } from '../training/cache-budget.js';
import type { DatasetFile, DecodedImage } from '../training/dataset.js';
import { modelArtifacts } from '../training/export.js';
import { type FeatureExtractor, InProcessExtractor, PoolExtractor } from '../training/features.js';
import { ImageSetBuilder } from '../training/image-set.js';
import { resolveTrainOptions } from '../training/options.js';
import { memoryStore } from '../training/row-store.js';
import { SpillArea } from '../training/spill.js';
import { train } from '../training/train.js';
import { tailProbabilities } from '../training/train-phases.js';
import { computeStores } from '../training/view-cache.js';
import { randomizeBatchNorm } from './helpers/fast-forward-fixtures.js';
import { makeDataset } from './helpers/images.js';

const SIZE = 32;
const N = 70; // three chunks of 32, 32 and 6 rows when forced to chunk
const BOUNDARY = 'block_13_expand_relu';

const file = (i: number): DatasetFile => ({ relPath: `c/${i}.png`, absPath: `/nowhere/${i}.png`, label: i % 2 });
function image(i: number): DecodedImage {
  const data = new Uint8Array(SIZE * SIZE * 3).map((_, k) => (k * 31 + i * 17 + ((k * i) >> 3)) % 256);
  return { data, width: SIZE, height: SIZE, file: file(i) };
}
const images = Array.from({ length: N }, (_, i) => image(i));
const draws: (AugmentDraw | null)[] = images.map((_, i) =>
  i % 3 === 0 ? null : { flipH: i % 2 === 0, flipV: false, angle: 0.03 * i, zoom: 1 + 0.01 * i, contrast: 1 },
);
const bits = (a: Float32Array | Uint16Array) => Buffer.from(a.buffer, a.byteOffset, a.byteLength);
const tmp = () => mkdtemp(path.join(os.tmpdir(), 'edgetune-stream-'));

let model: LayersModel;

beforeAll(async () => {
  await initBackend('wasm', () => {});
  model = buildClassifier({ alpha: 0.35, inputSize: SIZE, numClasses: 2 });
  randomizeBatchNorm(model);
});
afterAll(() => model?.dispose());

describe('chunked passes over a spilled image set', () => {
  const extractors: [string, () => Promise<FeatureExtractor>][] = [
    ['in-process', async () => new InProcessExtractor(model)],
    ['worker pool', async () => new PoolExtractor({ artifacts: await modelArtifacts(model), alpha: 0.35, inputSize: SIZE, workers: 1 })],
  ];
  for (const [name, make] of extractors) {
    it(`${name}: the same bits as one call over the whole set in memory`, async () => {
      const ex = await make();
      try {
        const dir = await tmp();
        const cache: RunCache = { budget: new CacheBudget(0), spill: new SpillArea(dir), chunkBytes: 1 };
        const onDisk = new ImageSetBuilder(cache, 'images', SIZE, N);
        for (const img of images) onDisk.append(img);
        const set = onDisk.finish();
        expect(set.onDisk).toBe(true);
        const progress: number[] = [];
        const [pooled, boundary] = await computeStores(ex, set, draws, [HEAD.pool, BOUNDARY], {
          cache,
          name: 't',
          memoryOnly: [HEAD.pool],
          onProgress: (d) => progress.push(d),
        });
        // Two chunks are in flight from the start: they must share one worker pool.
        if (ex instanceof PoolExtractor) expect(ex.poolStarts).toBe(1);
        const whole = await ex.computeLayers(images, draws, [HEAD.pool, BOUNDARY]);
        expect(pooled.onDisk).toBe(false);
        expect(boundary.onDisk).toBe(true);
        expect(progress.at(-1)).toBe(N);
        expect(bits(pooled.float32()).equals(bits(whole[0].data))).toBe(true);
        const all = Array.from({ length: N }, (_, i) => i);
        expect(bits(boundary.gather(all)).equals(bits(memoryStore(whole[1]).gather(all)))).toBe(true);
        expect(boundary.gather([5])).toHaveLength(boundary.dim);
        for (const s of [pooled, boundary]) s.dispose();
        set.dispose();
        expect(cache.spill.bytes).toBe(0);
        cache.spill.remove();
      } finally {
        await ex.close();
      }
    }, 120_000);
  }
});

describe('train with everything spilled to disk', () => {
  let root: string;
  beforeAll(async () => {
    process.env.EDGETUNE_OFFLINE = '1';
    delete process.env.EDGETUNE_BASE_WEIGHTS;
    root = await makeDataset(path.join(await tmp(), 'data'), { red: 40, blue: 40 }, 40);
  });

  async function run(cache: RunCache | undefined) {
    const out = path.join(await tmp(), 'model');
    const opts = resolveTrainOptions({ data: root, out, imageSize: SIZE, batchSize: 8, epochs: 2, fineTuneEpochs: 2, workers: 1, seed: 3 });
    const factory = async (m: LayersModel, alpha: number) =>
      new PoolExtractor({ artifacts: await modelArtifacts(m), alpha, inputSize: SIZE, workers: 1 });
    const result = await train(opts, () => {}, factory, cache);
    const sha = createHash('sha256')
      .update(await readFile(path.join(out, 'weights.bin')))
      .digest('hex');
    return { result, sha };
  }

  it('gives the same weights.bin as the in-memory run, and removes its spill folder', async () => {
    const before = tf.memory().numTensors;
    const mem = await run(undefined);
    expect(mem.result.validation.onDisk).toBe(false);
    mem.result.close();
    mem.result.model.dispose();
    const spill = new SpillArea(await tmp());
    const disk = await run({ budget: new CacheBudget(0), spill, chunkBytes: 1 });
    expect(disk.result.validation.onDisk).toBe(true);
    expect(spill.peak).toBeGreaterThan(0);
    expect(disk.result.calibration.length).toBe(disk.result.manifest.dataset.counts.train);
    expect((await disk.result.validation.read(0, 2)).map((i) => i.width)).toEqual([SIZE, SIZE]);
    const folder = spill.folder as string;
    expect(existsSync(folder)).toBe(true);
    disk.result.close();
    expect(existsSync(folder)).toBe(false);
    disk.result.model.dispose();
    expect(disk.sha).toBe(mem.sha);
    expect(tf.memory().numTensors).toBe(before);
  }, 300_000);
});

describe('validation probabilities of the fine-tuned tail', () => {
  it('are gathered a few batches per call, never the whole split at once, and come out as from one call', async () => {
    const dim = 262_144; // 32 rows of float32 are 32 MiB: one batch per call
    const rows = 70;
    const data = new Float32Array(rows * dim).map((_, k) => ((k * 7919) % 1000) / 1000 - 0.5);
    const store = memoryStore({ data, shape: [dim], rows });
    const calls: number[][] = [];
    // Three logits of a row: its mean, its first and its last value (a batch's logits depend on its rows only).
    const logitsOf = (b: Float32Array) => {
      const n = b.length / dim;
      const out = new Float32Array(n * 3);
      for (let r = 0; r < n; r++) {
        let sum = 0;
        for (let k = 0; k < dim; k++) sum += b[r * dim + k];
        out.set([sum / dim, b[r * dim], b[(r + 1) * dim - 1]], r * 3);
      }
      return out;
    };
    const tail = {
      threads: 1,
      evaluateLogits: async (batches: readonly Float32Array[]) => {
        calls.push(batches.map((b) => b.length / dim));
        return batches.map(logitsOf);
      },
    };
    const probs = await tailProbabilities(tail, store, 3);
    expect(calls).toEqual([[32], [32], [6]]);
    const want = tf.tidy(() => toProbabilities(tf.tensor2d(logitsOf(data), [rows, 3]), 3).dataSync() as Float32Array);
    expect(bits(probs)).toEqual(bits(want));
    store.dispose();
  });
});
