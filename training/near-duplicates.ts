// Near-duplicate photos: pairs whose embeddings have a cosine similarity at or above a threshold.
// The similarities come from blocks of one matrix product of the unit rows (U U^T on tfjs), not a
// JS loop over every pair and dimension: at the 6,000-image limit that loop is 18 M pairs x 1,280
// dimensions, minutes of one thread after training; the product takes seconds.
import { tf } from '../core/tf.js';

export interface SimilarPair {
  /** Row indices, i < j. */
  i: number;
  j: number;
  /** Cosine similarity of the two rows (float32 products). */
  similarity: number;
}

/** Rows of the product computed at a time: a [BLOCK_ROWS, n] float32 block (24 MiB at n = 6,000). */
const BLOCK_ROWS = 1024;

/**
 * Every pair i < j of the `n = embeddings.length / dim` rows with cosine similarity >= `threshold`
 * for which `consider(i, j)` holds, in row order. A zero row has similarity 0 with everything.
 */
export function similarPairs(
  embeddings: Float32Array,
  dim: number,
  threshold: number,
  consider: (i: number, j: number) => boolean = () => true,
  blockRows = BLOCK_ROWS,
): SimilarPair[] {
  if (!Number.isInteger(dim) || dim < 1 || embeddings.length % dim !== 0)
    throw new Error(`similarPairs: ${embeddings.length} values are not rows of ${dim}`);
  const n = embeddings.length / dim;
  const pairs: SimilarPair[] = [];
  if (n < 2) return pairs;
  const unit = new Float32Array(embeddings.length);
  for (let r = 0; r < n; r++) {
    let s = 0;
    for (let d = 0; d < dim; d++) s += embeddings[r * dim + d] ** 2;
    const norm = Math.sqrt(s) || 1;
    for (let d = 0; d < dim; d++) unit[r * dim + d] = embeddings[r * dim + d] / norm;
  }
  const u = tf.tensor2d(unit, [n, dim]);
  // Transposed once: tfjs WASM's matMul with a transpose flag is much slower than on a transposed copy.
  const ut = tf.transpose(u);
  try {
    for (let i0 = 0; i0 < n - 1; i0 += blockRows) {
      const rows = Math.min(blockRows, n - i0);
      // Row block [i0, i0 + rows) against the columns from i0 on: the pairs j > i of those rows.
      const block = tf.tidy(() => tf.matMul(tf.slice(u, [i0, 0], [rows, dim]), tf.slice(ut, [0, i0], [dim, n - i0])));
      const s = block.dataSync() as Float32Array;
      block.dispose();
      const width = n - i0;
      for (let r = 0; r < rows; r++) {
        const i = i0 + r;
        for (let c = r + 1; c < width; c++) {
          const v = s[r * width + c];
          if (v >= threshold && consider(i, i0 + c)) pairs.push({ i, j: i0 + c, similarity: v });
        }
      }
    }
  } finally {
    tf.dispose([u, ut]);
  }
  return pairs;
}
