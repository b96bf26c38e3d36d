// "None of the classes": class means of the pooled embeddings of the training images (after
// training, un-augmented), and a distance threshold chosen on the validation split so that a stated
// share of in-class validation photos is accepted, with a bootstrap interval for the threshold
// (with ~65 validation images it is set by a handful of photos).
import { nearestMeanDistance } from '../core/open-set-score.js';
import { createRng } from './rng.js';

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

/** Nearest-class-mean distance of every row. */
export function distances(embeddings: Float32Array, dim: number, means: Float32Array): Float64Array {
  const n = embeddings.length / dim;
  const out = new Float64Array(n);
  for (let i = 0; i < n; i++) out[i] = nearestMeanDistance(embeddings.subarray(i * dim, (i + 1) * dim), means, dim).distance;
  return out;
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
