import { beforeAll, describe, expect, it } from 'vitest';
import { initBackend } from '../core/backend.js';
import { tf } from '../core/tf.js';
import { heapOffset, wasmMemory } from '../core/tfjs-internals.js';
import { relu6GradFromOutput } from '../training/wasm-kernels/wasm-grad-kernels.js';
import { simdLoops } from '../training/wasm-kernels/wasm-simd.js';

// Single-thread build: asm.memory; threaded build (EDGETUNE_WASM_THREADS > 1): wasmMemory.
const memory = () => wasmMemory(tf.backend()) as WebAssembly.Memory;
const at = (t: tf.Tensor) => heapOffset(tf.backend(), t);

const SPECIAL = [Number.NaN, -0, 0, 6, 5.999999, 6.000001, 1e-45, -1e-45, Number.POSITIVE_INFINITY, -1, 3, 0.5, 7];

beforeAll(async () => {
  await initBackend('wasm', () => {});
  expect(tf.getBackend()).toBe('wasm');
});

describe('WebAssembly SIMD loops over the tfjs heap', () => {
  it('assemble and bind to the backend memory', () => {
    expect(simdLoops(memory())).toBeDefined();
  });

  for (const n of [0, 1, 3, 4, 5, 13, 19]) {
    it(`mulAcc and relu6Grad equal plain loops for ${n} elements (SIMD part and remainder), special values included`, () => {
      const loops = simdLoops(memory());
      if (!loops) throw new Error('no SIMD');
      const vals = (seed: number) =>
        Float32Array.from({ length: n + 4 }, (_, i) =>
          i < SPECIAL.length && seed === 2 ? SPECIAL[(i * 5) % SPECIAL.length] : Math.sin(i * 7.1 + seed) * 8,
        );
      // 4 guard elements after n: the loops must not touch them.
      const acc = tf.tensor1d(vals(0));
      const x = tf.tensor1d(vals(1));
      const d = tf.tensor1d(vals(2));
      const out = tf.tensor1d(new Float32Array(n + 4).fill(42));
      const [a0, xv, dv] = [acc, x, d].map((t) => t.dataSync().slice() as Float32Array);
      loops.mulAcc(at(acc), at(x), at(d), n);
      loops.relu6Grad(at(out), at(x), at(d), n);
      const gotAcc = acc.dataSync();
      const gotOut = out.dataSync();
      for (let i = 0; i < n + 4; i++) {
        const wantAcc = i < n ? Math.fround(a0[i] + Math.fround(xv[i] * dv[i])) : a0[i];
        expect(Object.is(gotAcc[i], wantAcc) || (Number.isNaN(gotAcc[i]) && Number.isNaN(wantAcc)), `acc[${i}]`).toBe(true);
        const y = dv[i];
        const wantOut = i < n ? (y > 0 && y < 6 ? xv[i] : 0) : 42;
        expect(gotOut[i], `out[${i}] for y=${y}`).toBe(wantOut);
      }
      tf.dispose([acc, x, d, out]);
    });
  }

  it('relu6GradFromOutput (SIMD on wasm) equals the cpu kernel on special values and odd sizes', () => {
    const y = tf.tensor1d(Float32Array.from({ length: 37 }, (_, i) => SPECIAL[i % SPECIAL.length]));
    const dy = tf.tensor1d(Float32Array.from({ length: 37 }, (_, i) => i - 18.5));
    const wasm = relu6GradFromOutput(dy, y).dataSync().slice();
    tf.setBackend('cpu');
    const [yc, dyc] = [y, dy].map((t) => tf.tensor(t.dataSync(), t.shape));
    const cpu = relu6GradFromOutput(dyc, yc).dataSync().slice();
    tf.dispose([yc, dyc]);
    tf.setBackend('wasm');
    expect(Array.from(wasm)).toEqual(Array.from(cpu));
    tf.dispose([y, dy]);
  });
});
