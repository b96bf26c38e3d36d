import { describe, expect, it } from 'vitest';
import type { RgbImage } from '../core/image.js';
import type { AugmentDraw } from '../training/augment.js';
import { SharedViewCache, stratifiedFolds } from '../training/cv.js';
import { studentTCdf, studentTQuantile, summarize } from '../training/cv-stats.js';
import type { DatasetListing, DecodedImage } from '../training/dataset.js';
import { type FeatureBlock, LayerExtractor } from '../training/features.js';

const listing = (perClass: number[]): DatasetListing => {
  const files = perClass.flatMap((n, label) =>
    Array.from({ length: n }, (_, i) => ({ relPath: `c${label}/${i}.jpg`, absPath: `/d/c${label}/${i}.jpg`, label })),
  );
  return { root: '/d', classes: perClass.map((_, k) => `c${k}`), files };
};

describe('stratifiedFolds', () => {
  it('validates every image exactly once, keeps the class proportions, fold sizes within one', () => {
    const l = listing([20, 7, 13]);
    const folds = stratifiedFolds(l, 4, 42);
    expect(folds).toHaveLength(4);
    const seen = folds.flatMap((f) => f.validation.map((x) => x.relPath));
    expect(seen.sort()).toEqual(l.files.map((f) => f.relPath).sort());
    const sizes = folds.map((f) => f.validation.length);
    expect(Math.max(...sizes) - Math.min(...sizes)).toBeLessThanOrEqual(1);
    for (const f of folds) {
      expect(f.train.length + f.validation.length).toBe(l.files.length);
      expect(f.train.some((t) => f.validation.includes(t))).toBe(false);
      expect(f.test).toEqual([]);
      for (const [c, n] of [20, 7, 13].entries()) {
        const k = f.validation.filter((x) => x.label === c).length;
        expect(k === Math.floor(n / 4) || k === Math.ceil(n / 4)).toBe(true);
      }
    }
    expect(stratifiedFolds(l, 4, 42)).toEqual(folds);
    expect(stratifiedFolds(l, 4, 7)).not.toEqual(folds);
  });

  it('refuses fewer than 2 folds, or a class smaller than k', () => {
    expect(() => stratifiedFolds(listing([5, 5]), 1, 1)).toThrow(/--folds must be an integer >= 2/);
    expect(() => stratifiedFolds(listing([5, 2]), 3, 1)).toThrow(/smallest class has 2 image/);
  });
});

/** A fake frozen pass: row = [index of the image in `order`, layer id, draw or -1], counting the views it computed. */
class FakeExtractor extends LayerExtractor {
  readonly description = 'fake';
  views = 0;
  async computeLayers(
    images: readonly RgbImage[],
    draws: readonly (AugmentDraw | null)[],
    layers: readonly string[],
  ): Promise<FeatureBlock[]> {
    this.views += images.length;
    return layers.map((l) => ({
      data: Float32Array.from(
        images.flatMap((img, i) => [Number((img as DecodedImage).file.relPath.split('/')[1].split('.')[0]), l.length, draws[i] ? 1 : -1]),
      ),
      shape: [3],
      rows: images.length,
    }));
  }
  async close() {}
}

const img = (i: number) =>
  ({ width: 1, height: 1, data: new Uint8Array(3), file: { relPath: `c/${i}.jpg`, absPath: '', label: 0 } }) as DecodedImage;

describe('SharedViewCache', () => {
  it('computes each un-augmented view once for every layer asked so far and serves it again, in the order asked', async () => {
    const cache = new SharedViewCache();
    const inner = new FakeExtractor();
    const ex = cache.wrap(inner);
    const val = [img(0), img(1)];
    const train = [img(2), img(3), img(4)];
    const [pool, boundary] = await ex.computeLayers(val, [null, null], ['pool', 'boundary16']);
    expect(Array.from(pool.data)).toEqual([0, 4, -1, 1, 4, -1]);
    expect(Array.from(boundary.data)).toEqual([0, 10, -1, 1, 10, -1]);
    // Phase 1 asks for pooled features only; the boundary rows are filled in the same pass.
    await ex.compute(train, [null, null, null], 'pool');
    expect(inner.views).toBe(5);
    // The next fold: everything comes from the cache, reordered.
    const [b2, p2] = await ex.computeLayers([img(4), img(0)], [null, null], ['boundary16', 'pool']);
    expect(Array.from(b2.data)).toEqual([4, 10, -1, 0, 10, -1]);
    expect(Array.from(p2.data)).toEqual([4, 4, -1, 0, 4, -1]);
    expect(inner.views).toBe(5);
    expect(cache.stats).toEqual({ computed: 5, reused: 2 });
    // Augmented views always go to the frozen layers.
    const draw = { flipH: false, flipV: false, angle: 0, zoom: 1, contrast: 1 } as unknown as AugmentDraw;
    const aug = await ex.compute([img(0)], [draw], 'pool');
    expect(Array.from(aug.data)).toEqual([0, 4, 1]);
    expect(inner.views).toBe(6);
  });
});

describe('t interval', () => {
  it('matches the t table and the normal limit', () => {
    expect(studentTQuantile(0.975, 1)).toBeCloseTo(12.7062, 3);
    expect(studentTQuantile(0.975, 2)).toBeCloseTo(4.3027, 3);
    expect(studentTQuantile(0.975, 14)).toBeCloseTo(2.1448, 3);
    expect(studentTQuantile(0.975, 1e6)).toBeCloseTo(1.96, 2);
    expect(studentTCdf(0, 5)).toBeCloseTo(0.5, 10);
  });

  it('summarizes: sample std, interval mean +- t * s / sqrt(n) clipped to [0, 1]', () => {
    const s = summarize([0.9, 0.95, 0.92]);
    expect(s.mean).toBeCloseTo(0.92333, 4);
    expect(s.std).toBeCloseTo(0.025166, 5);
    expect(s.ci95?.[0]).toBeCloseTo(0.92333 - (4.3027 * 0.025166) / Math.sqrt(3), 3);
    expect(summarize([0.99, 1, 0.97]).ci95?.[1]).toBe(1);
    expect(summarize([0.8]).ci95).toBeUndefined();
  });
});
