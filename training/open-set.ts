// "None of the classes": class means of the pooled embeddings of the training images (after
// training, un-augmented), and a distance threshold chosen on the validation split so that a stated
// share of in-class validation photos is accepted, with a bootstrap interval for the threshold
// (with ~65 validation images it is set by a handful of photos).
import { nearestMeanDistance, type OpenSetStats, openSetDistance } from '../core/open-set-score.js';
import { createRng } from './rng.js';

/** Defaults of the Mahalanobis score, chosen on selection data (README, "I don't know"). */
export const OPEN_SET_RANK = 16;
export const OPEN_SET_SHRINKAGE = 0.1;
/** The covariance is estimated on at most this many rows (an even stride over the training rows). */
export const OPEN_SET_MAX_ROWS = 512;

/** Unit-length class means [numClasses * dim] of the L2-normalised rows of `embeddings`. */
export function classMeans(embeddings: Float32Array, dim: number, labels: ArrayLike<number>, numClasses: number): Float32Array {
  const sums = new Float64Array(numClasses * dim);
  const counts = new Array<number>(numClasses).fill(0);
  for (let i = 0; i < labels.length; i++) {
    const c = labels[i];
    let n = 0;
    for (let d = 0; d < dim; d++) n += embeddings[i * dim + d] ** 2;
    n = Math.sqrt(n) || 1;
    for (let d = 0; d < dim; d++) sums[c * dim + d] += embeddings[i * dim + d] / n;
    counts[c]++;
  }
  const out = new Float32Array(numClasses * dim);
  for (let c = 0; c < numClasses; c++) {
    if (!counts[c]) throw new Error(`class ${c} has no training embedding`);
    let n = 0;
    for (let d = 0; d < dim; d++) n += sums[c * dim + d] ** 2;
    n = Math.sqrt(n) || 1;
    for (let d = 0; d < dim; d++) out[c * dim + d] = sums[c * dim + d] / n;
  }
  return out;
}

/** Nearest-class-mean cosine distance of every row. */
export function distances(embeddings: Float32Array, dim: number, means: Float32Array): Float64Array {
  const n = embeddings.length / dim;
  const out = new Float64Array(n);
  for (let i = 0; i < n; i++) out[i] = nearestMeanDistance(embeddings.subarray(i * dim, (i + 1) * dim), means, dim).distance;
  return out;
}

/** The open-set distance of every row under fitted statistics. */
export function scoreRows(embeddings: Float32Array, stats: OpenSetStats): Float64Array {
  const dim = stats.dim;
  const n = embeddings.length / dim;
  const out = new Float64Array(n);
  for (let i = 0; i < n; i++) out[i] = openSetDistance(embeddings.subarray(i * dim, (i + 1) * dim), stats).distance;
  return out;
}

/** Eigenvalues (descending) and eigenvectors (columns of `vectors`, row-major k x k) of a symmetric k x k matrix, by cyclic Jacobi. */
export function symmetricEigen(a: Float64Array, k: number): { values: Float64Array; vectors: Float64Array } {
  const m = Float64Array.from(a);
  const v = new Float64Array(k * k);
  for (let i = 0; i < k; i++) v[i * k + i] = 1;
  for (let sweep = 0; sweep < 100; sweep++) {
    let off = 0;
    for (let p = 0; p < k; p++) for (let q = p + 1; q < k; q++) off += m[p * k + q] ** 2;
    if (off < 1e-30) break;
    for (let p = 0; p < k; p++) {
      for (let q = p + 1; q < k; q++) {
        const apq = m[p * k + q];
        if (Math.abs(apq) < 1e-300) continue;
        const theta = (m[q * k + q] - m[p * k + p]) / (2 * apq);
        const t = Math.sign(theta || 1) / (Math.abs(theta) + Math.sqrt(theta * theta + 1));
        const c = 1 / Math.sqrt(t * t + 1);
        const s = t * c;
        for (let r = 0; r < k; r++) {
          const mrp = m[r * k + p];
          const mrq = m[r * k + q];
          m[r * k + p] = c * mrp - s * mrq;
          m[r * k + q] = s * mrp + c * mrq;
        }
        for (let r = 0; r < k; r++) {
          const mpr = m[p * k + r];
          const mqr = m[q * k + r];
          m[p * k + r] = c * mpr - s * mqr;
          m[q * k + r] = s * mpr + c * mqr;
        }
        for (let r = 0; r < k; r++) {
          const vrp = v[r * k + p];
          const vrq = v[r * k + q];
          v[r * k + p] = c * vrp - s * vrq;
          v[r * k + q] = s * vrp + c * vrq;
        }
      }
    }
  }
  const order = Array.from({ length: k }, (_, i) => i).sort((x, y) => m[y * k + y] - m[x * k + x]);
  const values = Float64Array.from(order, (i) => m[i * k + i]);
  const vectors = new Float64Array(k * k);
  order.forEach((src, dst) => {
    for (let r = 0; r < k; r++) vectors[r * k + dst] = v[r * k + src];
  });
  return { values, vectors };
}

/** x[xo..xo+len) . y[yo..yo+len), summed in index order. */
function dot(x: Float64Array, xo: number, y: Float64Array, yo: number, len: number): number {
  let s = 0;
  for (let d = 0; d < len; d++) s += x[xo + d] * y[yo + d];
  return s;
}

/**
 * out[q] = dot(x, xo, y, yo + q * stride, len) for q < 4, in one pass over x: each sum in index order,
 * so the same bits as four dot() calls, at a third of the time (the open-set fit's two products).
 */
function dots4(x: Float64Array, xo: number, y: Float64Array, yo: number, stride: number, len: number, out: Float64Array): void {
  const [y0, y1, y2, y3] = [yo, yo + stride, yo + 2 * stride, yo + 3 * stride];
  let s0 = 0;
  let s1 = 0;
  let s2 = 0;
  let s3 = 0;
  for (let d = 0; d < len; d++) {
    const v = x[xo + d];
    s0 += v * y[y0 + d];
    s1 += v * y[y1 + d];
    s2 += v * y[y2 + d];
    s3 += v * y[y3 + d];
  }
  out[0] = s0;
  out[1] = s1;
  out[2] = s2;
  out[3] = s3;
}

/**
 * Statistics of the Mahalanobis score: class means of the L2-normalised embeddings, and the shared
 * within-class covariance S, shrunk to (1 - shrinkage) S + shrinkage (tr S / dim) I and kept as its top
 * `rank` eigenvectors (orthogonal iteration on the rows' Gram matrix, then Rayleigh-Ritz) plus one residual
 * variance for the remaining directions. Deterministic (fixed start, fixed iteration count).
 */
export function fitMahalanobis(
  embeddings: Float32Array,
  dim: number,
  labels: ArrayLike<number>,
  numClasses: number,
  opts: { rank?: number; shrinkage?: number; maxRows?: number; iterations?: number } = {},
): Required<Pick<OpenSetStats, 'means' | 'basis' | 'variances' | 'residual'>> & {
  rank: number;
  shrinkage: number;
  rows: number;
  /** No within-class spread (every photo of a class embeds the same): the covariance is the identity, a Euclidean distance. */
  identity?: true;
} {
  const shrinkage = opts.shrinkage ?? OPEN_SET_SHRINKAGE;
  const n = labels.length;
  const rank = Math.max(1, Math.min(opts.rank ?? OPEN_SET_RANK, dim - 1, n - numClasses));
  const unit = new Float64Array(n * dim);
  for (let i = 0; i < n; i++) {
    let s = 0;
    for (let d = 0; d < dim; d++) s += embeddings[i * dim + d] ** 2;
    s = Math.sqrt(s) || 1;
    for (let d = 0; d < dim; d++) unit[i * dim + d] = embeddings[i * dim + d] / s;
  }
  const sums = new Float64Array(numClasses * dim);
  const counts = new Array<number>(numClasses).fill(0);
  for (let i = 0; i < n; i++) {
    counts[labels[i]]++;
    for (let d = 0; d < dim; d++) sums[labels[i] * dim + d] += unit[i * dim + d];
  }
  for (let c = 0; c < numClasses; c++) {
    if (!counts[c]) throw new Error(`class ${c} has no training embedding`);
    for (let d = 0; d < dim; d++) sums[c * dim + d] /= counts[c];
  }
  const stride = Math.max(1, Math.ceil(n / (opts.maxRows ?? OPEN_SET_MAX_ROWS)));
  const rowsUsed = Math.ceil(n / stride);
  const a = new Float64Array(rowsUsed * dim);
  let trace = 0;
  for (let r = 0; r < rowsUsed; r++) {
    const i = r * stride;
    for (let d = 0; d < dim; d++) {
      const v = unit[i * dim + d] - sums[labels[i] * dim + d];
      a[r * dim + d] = v;
      trace += v * v;
    }
  }
  trace /= rowsUsed;
  // The iteration runs in sample space: G = A A^T / m (m x m, m <= maxRows) has the same non-zero
  // eigenvalues as S = A^T A / m, and u = A^T w / sqrt(m lambda) maps its eigenvectors w to S's.
  // That is m^2 dim / 2 for G once instead of 2 m dim rank per iteration on S.
  const m = rowsUsed;
  const g = new Float64Array(m * m);
  const s4 = new Float64Array(4);
  for (let i = 0; i < m; i++) {
    let j = i;
    for (; j + 3 < m; j += 4) {
      dots4(a, i * dim, a, j * dim, dim, dim, s4);
      for (let q = 0; q < 4; q++) g[i * m + j + q] = g[(j + q) * m + i] = s4[q] / m;
    }
    for (; j < m; j++) g[i * m + j] = g[j * m + i] = dot(a, i * dim, a, j * dim, dim) / m;
  }
  const times = (w: Float64Array): Float64Array => {
    const out = new Float64Array(rank * m);
    let k = 0;
    for (; k + 3 < rank; k += 4)
      for (let i = 0; i < m; i++) {
        dots4(g, i * m, w, k * m, m, m, s4);
        for (let q = 0; q < 4; q++) out[(k + q) * m + i] = s4[q];
      }
    for (; k < rank; k++) for (let i = 0; i < m; i++) out[k * m + i] = dot(g, i * m, w, k * m, m);
    return out;
  };
  const orthonormalise = (w: Float64Array): Float64Array => {
    for (let k = 0; k < rank; k++) {
      for (let q = 0; q < k; q++) {
        let p = 0;
        for (let i = 0; i < m; i++) p += w[k * m + i] * w[q * m + i];
        for (let i = 0; i < m; i++) w[k * m + i] -= p * w[q * m + i];
      }
      let s = 0;
      for (let i = 0; i < m; i++) s += w[k * m + i] ** 2;
      s = Math.sqrt(s) || 1;
      for (let i = 0; i < m; i++) w[k * m + i] /= s;
    }
    return w;
  };
  let w: Float64Array = new Float64Array(rank * m);
  for (let k = 0; k < rank; k++) for (let i = 0; i < m; i++) w[k * m + i] = Math.sin(1 + 7.3 * k + 1.7 * i);
  w = orthonormalise(w);
  for (let it = 0; it < (opts.iterations ?? 60); it++) w = orthonormalise(times(w));
  const gw = times(w);
  const h = new Float64Array(rank * rank);
  for (let p = 0; p < rank; p++)
    for (let q = 0; q < rank; q++) {
      let s = 0;
      for (let i = 0; i < m; i++) s += w[p * m + i] * gw[q * m + i];
      h[p * rank + q] = s;
    }
  for (let p = 0; p < rank; p++)
    for (let q = p + 1; q < rank; q++) h[p * rank + q] = h[q * rank + p] = (h[p * rank + q] + h[q * rank + p]) / 2;
  const eig = symmetricEigen(h, rank);
  const basis = new Float32Array(rank * dim);
  const tiny = 1e-12 * (trace || 1);
  for (let k = 0; k < rank; k++) {
    // A direction with no variance (fewer distinct rows than the rank) stays a zero row: it adds nothing.
    if (!(eig.values[k] > tiny)) continue;
    const scale = 1 / Math.sqrt(m * eig.values[k]);
    const wk = new Float64Array(m);
    for (let q = 0; q < rank; q++) for (let i = 0; i < m; i++) wk[i] += eig.vectors[q * rank + k] * w[q * m + i];
    for (let i = 0; i < m; i++) {
      const c = wk[i] * scale;
      if (c !== 0) for (let d = 0; d < dim; d++) basis[k * dim + d] += c * a[i * dim + d];
    }
  }
  const mu = trace / dim;
  const kept = eig.values.reduce((s, e) => s + Math.max(0, e), 0);
  const rest = Math.max(0, trace - kept) / (dim - rank);
  const variances = Float32Array.from(eig.values, (e) => (1 - shrinkage) * Math.max(0, e) + shrinkage * mu);
  const residual = (1 - shrinkage) * rest + shrinkage * mu;
  if (!(residual > 0)) {
    // Nothing to fit a covariance on (e.g. each class one repeated photo): fall back to the identity.
    variances.fill(1);
    return { means: Float32Array.from(sums), basis, variances, residual: 1, rank, shrinkage, rows: rowsUsed, identity: true };
  }
  return { means: Float32Array.from(sums), basis, variances, residual, rank, shrinkage, rows: rowsUsed };
}

/** The smallest distance that accepts at least `target` of `d` (d <= threshold is accepted). */
export function thresholdFor(d: ArrayLike<number>, target: number): number {
  const sorted = Float64Array.from(d).sort();
  if (!sorted.length) return Number.POSITIVE_INFINITY;
  const k = Math.min(sorted.length, Math.max(1, Math.ceil(target * sorted.length)));
  return sorted[k - 1];
}

export interface OpenSetThreshold {
  /** Share of in-class validation photos the threshold is chosen to accept. */
  target: number;
  threshold: number;
  /** 95% percentile-bootstrap interval of the threshold. */
  interval: [number, number];
  bootstrap: number;
  /** Photos it was chosen on, and the share of them accepted (>= target by construction). */
  n: number;
  accepted: number;
  fittedOn: string;
}

/** The threshold for `target` on held-out in-class distances, with a seeded percentile bootstrap. */
export function chooseThreshold(d: ArrayLike<number>, target: number, fittedOn: string, seed: number, bootstrap = 1000): OpenSetThreshold {
  if (!(target > 0 && target <= 1)) throw new Error(`open-set target must be in (0, 1]; got ${target}`);
  const threshold = thresholdFor(d, target);
  const rng = createRng(seed);
  const n = d.length;
  const reps = new Float64Array(bootstrap);
  const sample = new Float64Array(n);
  for (let b = 0; b < bootstrap; b++) {
    for (let i = 0; i < n; i++) sample[i] = d[Math.floor(rng() * n)];
    reps[b] = thresholdFor(sample, target);
  }
  reps.sort();
  const q = (p: number) => reps[Math.min(bootstrap - 1, Math.max(0, Math.round(p * (bootstrap - 1))))];
  let accepted = 0;
  for (let i = 0; i < n; i++) if (d[i] <= threshold) accepted++;
  return {
    target,
    threshold,
    interval: n ? [q(0.025), q(0.975)] : [threshold, threshold],
    bootstrap,
    n,
    accepted: n ? accepted / n : 1,
    fittedOn,
  };
}

/** Share of `d` above `threshold` (flagged unknown). */
export function rejectedShare(d: ArrayLike<number>, threshold: number): number {
  if (!d.length) return 0;
  let r = 0;
  for (let i = 0; i < d.length; i++) if (d[i] > threshold) r++;
  return r / d.length;
}
