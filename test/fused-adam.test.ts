// The fused Adam update (training/fused-adam.ts) against tfjs' AdamOptimizer: the same bits for the
// weights, both moments and the powers over several steps with the WASM SIMD loop, tfjs Adam itself
// off WASM, checkpoint weights in tfjs' layout, and no tensor left behind.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { initBackend } from '../core/backend.js';
import { tf } from '../core/tf.js';
import { adamPowers, setLearningRate } from '../core/tfjs-internals.js';
import { FusedAdamOptimizer, fusedAdam } from '../training/fused-adam.js';
import { ADAM_UPDATE } from '../training/wasm-kernels/wasm-grad-kernels.js';

beforeAll(async () => {
  await initBackend('wasm', () => {});
  tf.setBackend('wasm');
});

afterAll(() => {
  tf.disposeVariables();
});

/** A deterministic pseudo-random float array (values spread over several magnitudes). */
function values(n: number, seed: number, scale: number): Float32Array {
  let s = seed >>> 0;
  return Float32Array.from({ length: n }, () => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    return ((s / 2 ** 32) * 2 - 1) * scale * 10 ** ((s % 5) - 2);
  });
}

const shapes: number[][] = [[3, 3, 7, 1], [1, 1, 13, 5], [9], [1283, 3]];

/** Runs `steps` Adam steps on fresh variables and returns every value the optimizer owns. */
async function run(optimizer: tf.Optimizer, steps: number, tag: string): Promise<Float32Array[]> {
  const vars = shapes.map((sh, i) =>
    tf.tidy(() =>
      tf.variable(
        tf.tensor(
          values(
            sh.reduce((a, b) => a * b, 1),
            11 + i,
            1,
          ),
          sh,
        ),
        true,
        `${tag}${i}`,
      ),
    ),
  );
  for (let t = 0; t < steps; t++) {
    setLearningRate(optimizer, 1e-3 / (t + 1));
    const grads = vars.map((v, i) => ({ name: v.name, tensor: tf.tensor(values(v.size, 100 * t + i, 0.5), v.shape) }));
    optimizer.applyGradients(grads);
    tf.dispose(grads.map((g) => g.tensor));
  }
  const moments = (await optimizer.getWeights()).map((w) => w.tensor);
  const out = [...vars, ...moments].map((t) => t.dataSync() as Float32Array);
  out.push(Float32Array.from(adamPowers(optimizer) ?? []));
  tf.dispose([...vars, ...moments]);
  return out;
}

describe('fused Adam', () => {
  it('gives tfjs Adam bit for bit over several steps, with the SIMD loop', async () => {
    const reference = await run(tf.train.adam(1e-3), 6, 'ref');
    const before = tf.memory().numTensors;
    const fused = fusedAdam(1e-3);
    const got = await run(fused, 6, 'fused');
    expect(got.length).toBe(reference.length);
    for (const [i, r] of reference.entries()) expect(Buffer.from(got[i].buffer).equals(Buffer.from(r.buffer)), `value ${i}`).toBe(true);
    fused.dispose();
    expect(tf.memory().numTensors).toBe(before);
  });

  it('writes the update into new tensors and checks its inputs', () => {
    const [w, g, m, v] = [1, 2, 3, 4].map((k) => tf.fill([5], k * 0.5));
    const a = { b1: 0.9, c1: 0.1, b2: 0.999, c2: 0.001, oma1: 0.1, oma2: 0.001, eps: 1e-7, negLr: -0.01 };
    const outs = tf.engine().runKernel(ADAM_UPDATE, { w, g, m, v }, a as never) as unknown as tf.Tensor[];
    expect(outs).toHaveLength(3);
    expect(w.dataSync()[0]).toBe(0.5); // inputs untouched
    expect(Math.abs(outs[1].dataSync()[0] - (1.5 * 0.9 + 1 * 0.1))).toBeLessThan(1e-6);
    const short = tf.zeros([4]);
    expect(() => tf.engine().runKernel(ADAM_UPDATE, { w, g: short, m, v }, a as never)).toThrow(/shapes differ/);
    tf.dispose([w, g, m, v, short, ...outs]);
  });

  it('is tfjs Adam off the WASM backend', async () => {
    tf.setBackend('cpu');
    try {
      const reference = await run(tf.train.adam(1e-3), 3, 'cref');
      const got = await run(new FusedAdamOptimizer(1e-3, 0.9, 0.999), 3, 'cfused');
      for (const [i, r] of reference.entries()) expect(got[i]).toEqual(r);
    } finally {
      tf.setBackend('wasm');
    }
  });
});
