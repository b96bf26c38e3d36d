import { describe, expect, it } from 'vitest';
import { decodeFloat32, decodeOpenSetStats, encodeFloat32, nearestMeanDistance, openSetDistance } from '../core/open-set-score.js';
import { topConfidenceEce } from '../training/calibration.js';
import {
  chooseThreshold,
  classMeans,
  distances,
  fitMahalanobis,
  rejectedShare,
  scoreRows,
  symmetricEigen,
  thresholdFor,
} from '../training/open-set.js';
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

describe('symmetric eigen-decomposition (Jacobi)', () => {
  it('reconstructs the matrix from its eigenpairs, eigenvalues descending', () => {
    const a = Float64Array.from([4, 1, 0.5, 1, 3, 0.2, 0.5, 0.2, 1]);
    const { values, vectors } = symmetricEigen(a, 3);
    expect(values[0]).toBeGreaterThanOrEqual(values[1]);
    expect(values[1]).toBeGreaterThanOrEqual(values[2]);
    for (let i = 0; i < 3; i++)
      for (let j = 0; j < 3; j++) {
        let s = 0;
        for (let k = 0; k < 3; k++) s += vectors[i * 3 + k] * values[k] * vectors[j * 3 + k];
        expect(s).toBeCloseTo(a[i * 3 + j], 9);
      }
  });
});

// Anisotropic classes: every class varies a lot along dimension 0 (a nuisance shared by the classes) and
// little elsewhere. A photo off the classes along a low-variance direction is unusual even though its
// cosine distance is no larger than an in-class photo's far along the nuisance direction.
describe('Mahalanobis open-set score (shared shrunk low-rank covariance)', () => {
  const dim = 12;
  const rng = createRng(9);
  const gauss = () => {
    const u = Math.max(rng(), 1e-12);
    return Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * rng());
  };
  const sample = (c: number, n: number, offset: number[] = []) => {
    const out = new Float32Array(n * dim);
    for (let i = 0; i < n; i++)
      for (let d = 0; d < dim; d++) out[i * dim + d] = (d === 1 + c ? 4 : 2) + (d === 0 ? 1.5 : 0.05) * gauss() + (offset[d] ?? 0);
    return out;
  };
  const train = new Float32Array(300 * dim);
  for (const c of [0, 1, 2]) train.set(sample(c, 100), c * 100 * dim);
  const labels = Int32Array.from({ length: 300 }, (_, i) => Math.floor(i / 100));
  const fit = fitMahalanobis(train, dim, labels, 3, { rank: 4 });
  const stats = { metric: 'mahalanobis-shared-lowrank' as const, dim, ...fit };

  it('fits an orthonormal basis whose first direction is the shared nuisance', () => {
    for (let a = 0; a < fit.rank; a++)
      for (let b = 0; b < fit.rank; b++) {
        let s = 0;
        for (let d = 0; d < dim; d++) s += fit.basis[a * dim + d] * fit.basis[b * dim + d];
        expect(s).toBeCloseTo(a === b ? 1 : 0, 4);
      }
    expect(Math.abs(fit.basis[0])).toBeGreaterThan(0.9);
    expect(fit.variances[0]).toBeGreaterThan(10 * fit.residual);
    expect(fit.rows).toBe(300);
    // Over the row cap the covariance comes from an even stride of the rows, still fitting the nuisance.
    const capped = fitMahalanobis(train, dim, labels, 3, { rank: 4, maxRows: 100 });
    expect(capped.rows).toBe(100);
    expect(Math.abs(capped.basis[0])).toBeGreaterThan(0.9);
  });

  it('flags a left-out class that the cosine score mostly accepts, at 95% in-class acceptance', () => {
    const val = new Float32Array(90 * dim);
    for (const c of [0, 1, 2]) val.set(sample(c, 30), c * 30 * dim);
    const outside = sample(0, 60, [0, -1, 1]);
    const m = chooseThreshold(scoreRows(val, stats), 0.95, 'validation', 3, 200);
    const cosMeans = classMeans(train, dim, labels, 3);
    const cos = chooseThreshold(distances(val, dim, cosMeans), 0.95, 'validation', 3, 200);
    const flaggedMaha = rejectedShare(scoreRows(outside, stats), m.threshold);
    const flaggedCos = rejectedShare(distances(outside, dim, cosMeans), cos.threshold);
    expect(flaggedMaha).toBeGreaterThan(0.9);
    expect(flaggedMaha).toBeGreaterThan(flaggedCos + 0.3);
    expect(m.threshold).toBeGreaterThan(0);
    expect(m.threshold).toBeLessThan(1);
  });

  it('is deterministic and round-trips through the manifest form', () => {
    const again = fitMahalanobis(train, dim, labels, 3, { rank: 4 });
    expect(Array.from(again.basis)).toEqual(Array.from(fit.basis));
    const stored = {
      metric: stats.metric,
      dim,
      means: encodeFloat32(fit.means),
      rank: fit.rank,
      basis: encodeFloat32(fit.basis),
      variances: encodeFloat32(fit.variances),
      residual: fit.residual,
    };
    const back = decodeOpenSetStats(stored, 3);
    const x = sample(1, 1);
    expect(openSetDistance(x, back)).toEqual(openSetDistance(x, stats));
    expect(openSetDistance(x, back).nearest).toBe(1);
    expect(() => decodeOpenSetStats({ ...stored, residual: undefined }, 3)).toThrow(/residual/);
    expect(() => decodeOpenSetStats({ ...stored, rank: 5 }, 3)).toThrow(/float32/);
  });
});

describe('ECE from top-1 confidences', () => {
  it('is zero when confidence matches accuracy per bin and the gap otherwise', () => {
    expect(topConfidenceEce([0.75, 0.75, 0.75, 0.75], [true, true, true, false])).toBeCloseTo(0, 12);
    expect(topConfidenceEce([0.95, 0.95], [false, false])).toBeCloseTo(0.95, 12);
  });
});

describe('Mahalanobis fit without within-class spread', () => {
  it('falls back to the identity (a Euclidean distance to the class means) instead of failing the run', () => {
    const dim = 6;
    // Two classes, each one repeated embedding: no covariance to fit.
    const a = [1, 0, 0, 0, 0, 0];
    const b = [0, 1, 0, 0, 0, 0];
    const train = Float32Array.from([...a, ...a, ...a, ...b, ...b, ...b]);
    const fit = fitMahalanobis(train, dim, [0, 0, 0, 1, 1, 1], 2, { rank: 2 });
    expect(fit.identity).toBe(true);
    expect(fit.residual).toBe(1);
    const stats = { metric: 'mahalanobis-shared-lowrank' as const, dim, ...fit };
    expect(openSetDistance(a, stats)).toEqual({ distance: 0, nearest: 0 });
    const off = openSetDistance([0, 0, 1, 0, 0, 0], stats);
    expect(off.distance).toBeGreaterThan(0);
    expect(openSetDistance(b, stats).nearest).toBe(1);
  });
});
