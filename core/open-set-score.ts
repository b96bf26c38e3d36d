// The open-set score shared by training (fitting the threshold) and serving (applying it), a function
// of a photo's pooled embedding and statistics stored with the model (manifest.openSet). Two metrics:
// - 'mahalanobis-shared-lowrank' (the default since it flags more left-out photos at the same in-class
//   acceptance, measured in the README): on the L2-normalised embedding, the smallest Mahalanobis
//   distance to a class mean under one covariance shared by the classes, shrunk towards a multiple
//   of the identity and kept as its top `rank` eigenvectors plus one residual variance for the rest.
//   It is returned as 1 - exp(-D^2 / (2 dim)), a monotone map into [0, 1) so that thresholds stay in
//   the API's 0-2 range like the cosine distance's.
// - 'cosine-nearest-class-mean' (models trained before): 1 - cos to the nearest unit class mean.

/** 1 - cos(x, mean) for the nearest of the `means` (rows of `dim`, each unit length). */
export function nearestMeanDistance(x: ArrayLike<number>, means: Float32Array, dim: number): { distance: number; nearest: number } {
  let norm = 0;
  for (let d = 0; d < dim; d++) norm += x[d] * x[d];
  norm = Math.sqrt(norm) || 1;
  let best = Number.POSITIVE_INFINITY;
  let nearest = 0;
  for (let c = 0; c * dim < means.length; c++) {
    let dot = 0;
    for (let d = 0; d < dim; d++) dot += x[d] * means[c * dim + d];
    const dist = 1 - dot / norm;
    if (dist < best) {
      best = dist;
      nearest = c;
    }
  }
  return { distance: best, nearest };
}

export type OpenSetMetric = 'cosine-nearest-class-mean' | 'mahalanobis-shared-lowrank';

/** What the score needs, decoded from the manifest. */
export interface OpenSetStats {
  metric: OpenSetMetric;
  dim: number;
  /** [classes x dim]: unit rows (cosine) or means of the L2-normalised embeddings (Mahalanobis). */
  means: Float32Array;
  /** Mahalanobis only: [rank x dim] orthonormal rows, their shrunk variances, and the variance of the rest. */
  basis?: Float32Array;
  variances?: Float32Array;
  residual?: number;
}

/** The manifest fields the statistics come from (a structural subset of manifest.openSet). */
export interface StoredOpenSet {
  metric: OpenSetMetric;
  dim: number;
  means: string;
  rank?: number;
  basis?: string;
  variances?: string;
  residual?: number;
}

export function decodeOpenSetStats(o: StoredOpenSet, numClasses: number): OpenSetStats {
  const means = decodeFloat32(o.means, numClasses * o.dim);
  if (o.metric === 'cosine-nearest-class-mean') return { metric: o.metric, dim: o.dim, means };
  if (!o.rank || !o.basis || !o.variances || !(o.residual && o.residual > 0))
    throw new Error('mahalanobis statistics need rank, basis, variances and a positive residual');
  return {
    metric: o.metric,
    dim: o.dim,
    means,
    basis: decodeFloat32(o.basis, o.rank * o.dim),
    variances: decodeFloat32(o.variances, o.rank),
    residual: o.residual,
  };
}

/** The open-set distance of one pooled embedding (larger is further from every class), and its nearest class. */
export function openSetDistance(x: ArrayLike<number>, s: OpenSetStats): { distance: number; nearest: number } {
  if (s.metric === 'cosine-nearest-class-mean') return nearestMeanDistance(x, s.means, s.dim);
  const { dim, means } = s;
  const basis = s.basis as Float32Array;
  const variances = s.variances as Float32Array;
  const residual = s.residual as number;
  const rank = variances.length;
  let norm = 0;
  for (let d = 0; d < dim; d++) norm += x[d] * x[d];
  norm = Math.sqrt(norm) || 1;
  const z = new Float64Array(dim);
  let best = Number.POSITIVE_INFINITY;
  let nearest = 0;
  for (let c = 0; c * dim < means.length; c++) {
    let total = 0;
    for (let d = 0; d < dim; d++) {
      z[d] = x[d] / norm - means[c * dim + d];
      total += z[d] * z[d];
    }
    let inBasis = 0;
    let projected = 0;
    for (let k = 0; k < rank; k++) {
      let p = 0;
      for (let d = 0; d < dim; d++) p += z[d] * basis[k * dim + d];
      inBasis += (p * p) / variances[k];
      projected += p * p;
    }
    const d2 = inBasis + Math.max(0, total - projected) / residual;
    if (d2 < best) {
      best = d2;
      nearest = c;
    }
  }
  return { distance: -Math.expm1(-best / (2 * dim)), nearest };
}

export function encodeFloat32(a: Float32Array): string {
  return Buffer.from(a.buffer, a.byteOffset, a.byteLength).toString('base64');
}

export function decodeFloat32(b64: string, expectedLength: number): Float32Array {
  const buf = Buffer.from(b64, 'base64');
  if (buf.byteLength !== expectedLength * 4)
    throw new Error(`open-set statistics: expected ${expectedLength} float32 values, got ${buf.byteLength} bytes`);
  const out = new Float32Array(expectedLength);
  new Uint8Array(out.buffer).set(buf);
  return out;
}
