import { beforeAll, describe, expect, it } from 'vitest';
import { initBackend } from '../core/backend.js';
import { tf } from '../core/tf.js';
import { similarPairs } from '../training/near-duplicates.js';
import { createRng } from '../training/rng.js';

/** Every pair in float64, the definition the product must agree with. */
function bruteForce(e: Float32Array, dim: number): number[][] {
  const n = e.length / dim;
  const norm = (r: number) => Math.sqrt(Array.from(e.subarray(r * dim, (r + 1) * dim)).reduce((a, v) => a + v * v, 0)) || 1;
  const s: number[][] = [];
  for (let i = 0; i < n; i++) {
    s.push([]);
    for (let j = 0; j < n; j++) {
      let dot = 0;
      for (let d = 0; d < dim; d++) dot += e[i * dim + d] * e[j * dim + d];
      s[i].push(dot / (norm(i) * norm(j)));
    }
  }
  return s;
}

describe('near-duplicate pairs from the matrix product', () => {
  beforeAll(async () => {
    await initBackend('wasm', () => {});
  });
  const dim = 40;
  const n = 53;
  const rng = createRng(11);
  const e = new Float32Array(n * dim);
  for (let k = 0; k < e.length; k++) e[k] = rng() < 0.4 ? rng() * 6 : 0;
  // Rows 10, 20, ... are near-copies of the row before; row 33 is zero.
  for (let r = 10; r < n; r += 10) for (let d = 0; d < dim; d++) e[r * dim + d] = e[(r - 1) * dim + d] * (1 + 0.05 * (rng() - 0.5));
  e.fill(0, 33 * dim, 34 * dim);
  const ref = bruteForce(e, dim);
  const threshold = 0.97;

  it('finds exactly the pairs at or above the threshold, across row blocks, with float32 similarities', () => {
    const expected: [number, number][] = [];
    for (let i = 0; i < n; i++) for (let j = i + 1; j < n; j++) if (ref[i][j] >= threshold) expected.push([i, j]);
    // The planted copies are found, and no pair sits so near the threshold that float32 could flip it.
    expect(expected).toEqual(
      expect.arrayContaining([
        [9, 10],
        [19, 20],
        [49, 50],
      ]),
    );
    for (let i = 0; i < n; i++) for (let j = i + 1; j < n; j++) expect(Math.abs(ref[i][j] - threshold)).toBeGreaterThan(1e-4);
    for (const block of [7, 16, 52, 53, 1024]) {
      const pairs = similarPairs(e, dim, threshold, undefined, block);
      expect(pairs.map((p) => [p.i, p.j])).toEqual(expected);
      for (const p of pairs) expect(p.similarity).toBeCloseTo(ref[p.i][p.j], 5);
    }
  });

  it('asks `consider` about each pair found, and keeps only those it accepts', () => {
    const asked: string[] = [];
    const pairs = similarPairs(e, dim, threshold, (i, j) => {
      asked.push(`${i}-${j}`);
      return i !== 19;
    });
    expect(asked).toContain('19-20');
    expect(pairs.some((p) => p.i === 19)).toBe(false);
    expect(pairs.some((p) => p.i === 9 && p.j === 10)).toBe(true);
  });

  it('gives a zero row similarity 0 with everything, and a threshold of 0 every other pair', () => {
    const pairs = similarPairs(e, dim, 1e-9);
    expect(pairs.some((p) => p.i === 33 || p.j === 33)).toBe(false);
    expect(pairs.length).toBe(((n - 1) * (n - 2)) / 2);
  });

  it('keeps no tensors, and refuses values that are not whole rows', () => {
    const before = tf.memory().numTensors;
    similarPairs(e, dim, threshold, undefined, 8);
    expect(tf.memory().numTensors).toBe(before);
    expect(() => similarPairs(e.subarray(1), dim, threshold)).toThrow(/not rows of 40/);
    expect(similarPairs(e.subarray(0, dim), dim, threshold)).toEqual([]);
  });
});
