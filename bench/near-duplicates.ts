// npm run bench:near-duplicates: seconds of the near-duplicate search (training/near-duplicates.ts)
// at the alpaca set's size and up to the 6,000-image limit, on tfjs WASM (one thread, as training
// runs it), beside the per-pair JS loop it replaced (kept here as the reference), and whether both
// find the same pairs. Embeddings are synthetic: 1,280-d non-negative rows (pooled ReLU6 features
// look like that), a few planted near-copies.
//
//   npm run bench:near-duplicates [-- --sizes 327,2000,6000 --reference-max 2000]
import { parseArgs } from 'node:util';
import { initBackend } from '../core/backend.js';
import { tf } from '../core/tf.js';
import { similarPairs } from '../training/near-duplicates.js';
import { DUPLICATE_SIMILARITY } from '../training/post-training.js';
import { createRng } from '../training/rng.js';
import { machineLine } from './machine.js';

const { values } = parseArgs({
  options: { sizes: { type: 'string', default: '327,2000,6000' }, 'reference-max': { type: 'string', default: '2000' } },
});
const DIM = 1280;

/** The loop post-training.ts and review.ts ran before: every pair, every dimension, in JS. */
function referencePairs(emb: Float32Array, n: number, threshold: number): { i: number; j: number; similarity: number }[] {
  const unit = Array.from({ length: n }, (_, r) => {
    const v = emb.subarray(r * DIM, (r + 1) * DIM);
    let s = 0;
    for (let d = 0; d < DIM; d++) s += v[d] * v[d];
    const norm = Math.sqrt(s) || 1;
    return Float32Array.from(v, (x) => x / norm);
  });
  const out = [];
  for (let i = 0; i < n; i++) {
    for (let j = i + 1; j < n; j++) {
      let dot = 0;
      for (let d = 0; d < DIM; d++) dot += unit[i][d] * unit[j][d];
      if (dot >= threshold) out.push({ i, j, similarity: dot });
    }
  }
  return out;
}

function embeddings(n: number): Float32Array {
  const rng = createRng(n);
  const e = new Float32Array(n * DIM);
  for (let k = 0; k < e.length; k++) e[k] = rng() < 0.3 ? rng() * 6 : 0;
  // Every 50th row a near-copy of the row before it.
  for (let r = 50; r < n; r += 50) for (let d = 0; d < DIM; d++) e[r * DIM + d] = e[(r - 1) * DIM + d] * (1 + 0.02 * (rng() - 0.5));
  return e;
}

console.log(machineLine());
await initBackend('wasm');
console.log(`tfjs backend ${tf.getBackend()}; ${DIM}-d rows; threshold ${DUPLICATE_SIMILARITY}`);
console.log('images   pairs        matrix product s   JS loop s   same pairs   max |similarity difference|');
for (const n of values.sizes.split(',').map(Number)) {
  const e = embeddings(n);
  let t = performance.now();
  const fast = similarPairs(e, DIM, DUPLICATE_SIMILARITY);
  const fastS = (performance.now() - t) / 1000;
  let refS = '-';
  let same = '-';
  let diff = '-';
  if (n <= Number(values['reference-max'])) {
    t = performance.now();
    const ref = referencePairs(e, n, DUPLICATE_SIMILARITY);
    refS = ((performance.now() - t) / 1000).toFixed(2);
    same = String(ref.length === fast.length && ref.every((p, k) => p.i === fast[k].i && p.j === fast[k].j));
    diff = Math.max(0, ...ref.map((p, k) => Math.abs(p.similarity - (fast[k]?.similarity ?? Number.NaN)))).toExponential(1);
  }
  console.log(
    `${String(n).padStart(6)} ${String((n * (n - 1)) / 2).padStart(10)} ${fastS.toFixed(3).padStart(18)} ${refS.padStart(11)} ${same.padStart(12)}   ${diff} (${fast.length} pairs found)`,
  );
}
