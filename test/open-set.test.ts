import { describe, expect, it } from 'vitest';
import { decodeFloat32, encodeFloat32, nearestMeanDistance } from '../core/open-set-score.js';
import { chooseThreshold, classMeans, distances, rejectedShare, thresholdFor } from '../training/open-set.js';
import { createRng } from '../training/rng.js';

// Three well-separated clusters in 16 dims, and a fourth "left-out" cluster the means never saw.
function cluster(centre: number[], n: number, spread: number, rng: () => number): Float32Array {
  const out = new Float32Array(n * centre.length);
  for (let i = 0; i < n; i++) for (let d = 0; d < centre.length; d++) out[i * centre.length + d] = centre[d] + (rng() - 0.5) * spread;
  return out;
}
const dim = 16;
const centre = (k: number) => Array.from({ length: dim }, (_, d) => (d % 4 === k ? 3 : 0.2));

describe('open-set class means and threshold', () => {
  const rng = createRng(5);
  const train = [0, 1, 2].map((k) => cluster(centre(k), 40, 1.2, rng));
  const emb = new Float32Array(120 * dim);
  for (const [k, c] of train.entries()) emb.set(c, k * 40 * dim);
  const labels = Int32Array.from({ length: 120 }, (_, i) => Math.floor(i / 40));
  const means = classMeans(emb, dim, labels, 3);

  it('means are unit rows pointing at their cluster', () => {
    for (let c = 0; c < 3; c++) {
      const row = means.subarray(c * dim, (c + 1) * dim);
      expect(Math.hypot(...row)).toBeCloseTo(1, 5);
      expect(nearestMeanDistance(centre(c), means, dim).nearest).toBe(c);
    }
  });

  it('the threshold accepts the target share of in-class photos and flags a left-out class', () => {
    const val = new Float32Array(60 * dim);
    for (const k of [0, 1, 2]) val.set(cluster(centre(k), 20, 1.2, rng), k * 20 * dim);
    const d = distances(val, dim, means);
    const t = chooseThreshold(d, 0.95, 'synthetic validation', 11, 500);
    expect(t.accepted).toBeGreaterThanOrEqual(0.95);
    expect(rejectedShare(d, t.threshold)).toBeLessThanOrEqual(0.05);
    expect(t.interval[0]).toBeLessThanOrEqual(t.threshold);
    expect(t.interval[1]).toBeGreaterThanOrEqual(t.threshold);
    expect(t.interval[1]).toBeGreaterThan(t.interval[0]);
    const outside = cluster(centre(3), 50, 1.2, rng);
    expect(rejectedShare(distances(outside, dim, means), t.threshold)).toBeGreaterThan(0.9);
    // Seeded: the same interval twice.
    expect(chooseThreshold(d, 0.95, 'x', 11, 500).interval).toEqual(t.interval);
  });

  it('thresholdFor is the smallest accepted distance that reaches the target', () => {
    const d = [0.1, 0.5, 0.2, 0.4, 0.3];
    expect(thresholdFor(d, 0.6)).toBe(0.3);
    expect(thresholdFor(d, 1)).toBe(0.5);
    expect(thresholdFor(d, 0.01)).toBe(0.1);
    expect(() => chooseThreshold(d, 1.5, 'x', 1)).toThrow(/target/);
  });

  it('class means round-trip through their base64 form', () => {
    const back = decodeFloat32(encodeFloat32(means), 3 * dim);
    expect(Array.from(back)).toEqual(Array.from(means));
    expect(() => decodeFloat32(encodeFloat32(means), 2 * dim)).toThrow(/float32/);
  });
});
