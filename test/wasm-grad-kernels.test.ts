import { beforeAll, describe, expect, it } from 'vitest';
import { initBackend } from '../core/backend.js';
import { tf } from '../core/tf.js';
import { heapOffset, wasmMemory } from '../core/tfjs-internals.js';
import { columnSumsOf, registerWasmGradKernels, relu6GradFromOutput } from '../training/wasm-kernels/wasm-grad-kernels.js';

// Seeded pseudo-random values so a failure reproduces.
function rand(shape: number[], seed: number): tf.Tensor {
  let s = seed >>> 0;
  const n = shape.reduce((a, b) => a * b, 1);
  const v = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    v[i] = s / 2 ** 31 - 1;
  }
  return tf.tensor(v, shape);
}

function onBackend(name: string, f: () => tf.Tensor): Float32Array {
  const prev = tf.getBackend();
  tf.setBackend(name);
  try {
    const t = f();
    const out = t.dataSync() as Float32Array;
    t.dispose();
    return out.slice();
  } finally {
    tf.setBackend(prev);
  }
}

function expectClose(a: Float32Array, b: Float32Array, tol = 1e-4): void {
  expect(a.length).toBe(b.length);
  let scale = 1;
  for (const v of b) scale = Math.max(scale, Math.abs(v));
  let worst = 0;
  for (let i = 0; i < a.length; i++) worst = Math.max(worst, Math.abs(a[i] - b[i]));
  expect(worst / scale).toBeLessThan(tol);
}

interface ConvCase {
  x: [number, number, number, number];
  k: number;
  cout: number;
  stride: number;
  pad: 'same' | 'valid';
}

const convCases: ConvCase[] = [
  { x: [2, 5, 5, 8], k: 1, cout: 12, stride: 1, pad: 'same' },
  { x: [3, 4, 6, 16], k: 1, cout: 4, stride: 1, pad: 'valid' },
  { x: [2, 7, 7, 3], k: 3, cout: 5, stride: 2, pad: 'valid' },
  { x: [1, 6, 5, 4], k: 3, cout: 6, stride: 1, pad: 'same' },
  { x: [2, 6, 6, 4], k: 1, cout: 3, stride: 2, pad: 'same' },
];

interface DwCase {
  x: [number, number, number, number];
  k: number;
  mul: number;
  stride: number;
  pad: 'same' | 'valid';
}

const dwCases: DwCase[] = [
  { x: [2, 6, 6, 8], k: 3, mul: 1, stride: 1, pad: 'same' },
  { x: [2, 7, 7, 5], k: 3, mul: 1, stride: 2, pad: 'valid' },
  { x: [1, 8, 8, 3], k: 3, mul: 1, stride: 2, pad: 'same' },
  { x: [2, 5, 6, 4], k: 3, mul: 2, stride: 1, pad: 'same' },
  { x: [1, 9, 9, 6], k: 5, mul: 1, stride: 1, pad: 'valid' },
];

describe('registered WASM gradient kernels match the cpu backend', () => {
  beforeAll(async () => {
    registerWasmGradKernels();
    await initBackend('wasm', () => {});
    expect(tf.getBackend()).toBe('wasm');
  });

  // First, while the WASM heap is still small, so the inputs stay small.
  it('is right when its inputs live on another backend and moving them grows the WASM heap', () => {
    // Regression: the backend moves such inputs lazily on first access; the allocation can grow
    // the WASM memory and detach heap views taken before it (results were silently wrong).
    const heap = () => (wasmMemory(tf.backend()) as WebAssembly.Memory).buffer.byteLength;
    const c = 64;
    const side = Math.ceil(Math.sqrt(heap() / 4 / c / 2)) + 1; // each input > half the current heap
    const x = rand([1, side, side, c], 11);
    const w = rand([3, 3, c, 1], 12);
    const dy = rand([1, side, side, c], 13);
    const f = (a: tf.Tensor, b: tf.Tensor) => tf.depthwiseConv2d(a as tf.Tensor4D, b as tf.Tensor4D, 1, 'same');
    const grads = (xs: tf.Tensor, ws: tf.Tensor, d: tf.Tensor) =>
      tf.tidy(() =>
        tf
          .grads(f)([xs, ws], d)
          .map((t) => t.dataSync().slice()),
      );
    const expected = grads(x, w, dy); // inputs resident on wasm
    tf.setBackend('cpu');
    const [xc, wc, dyc] = [x, w, dy].map((t) => tf.tensor(t.dataSync(), t.shape));
    tf.setBackend('wasm');
    const before = heap();
    const got = grads(xc, wc, dyc);
    expect(heap()).toBeGreaterThan(before);
    expectClose(got[0] as Float32Array, expected[0] as Float32Array, 1e-6);
    expectClose(got[1] as Float32Array, expected[1] as Float32Array, 1e-6);
    tf.dispose([x, w, dy, xc, wc, dyc]);
  });

  it.each(convCases)('Conv2DBackpropFilter and Conv2DBackpropInput via tf.grads %o', ({ x, k, cout, stride, pad }) => {
    const xs = rand(x, 1);
    const w = rand([k, k, x[3], cout], 2);
    const f = (a: tf.Tensor, b: tf.Tensor) => tf.conv2d(a as tf.Tensor4D, b as tf.Tensor4D, stride, pad);
    const y = f(xs, w);
    const dy = rand(y.shape, 3);
    const g = (which: 0 | 1) => () => tf.tidy(() => tf.grads(f)([xs, w], dy)[which]);
    expectClose(onBackend('wasm', g(0)), onBackend('cpu', g(0)));
    expectClose(onBackend('wasm', g(1)), onBackend('cpu', g(1)));
    tf.dispose([xs, w, y, dy]);
  });

  it.each(dwCases)('DepthwiseConv2dNativeBackpropFilter/Input via tf.grads %o', ({ x, k, mul, stride, pad }) => {
    const xs = rand(x, 4);
    const w = rand([k, k, x[3], mul], 5);
    const f = (a: tf.Tensor, b: tf.Tensor) => tf.depthwiseConv2d(a as tf.Tensor4D, b as tf.Tensor4D, stride, pad);
    const y = f(xs, w);
    const dy = rand(y.shape, 6);
    const g = (which: 0 | 1) => () => tf.tidy(() => tf.grads(f)([xs, w], dy)[which]);
    expectClose(onBackend('wasm', g(0)), onBackend('cpu', g(0)));
    expectClose(onBackend('wasm', g(1)), onBackend('cpu', g(1)));
    tf.dispose([xs, w, y, dy]);
  });

  it('ReLU6 gradient from the output equals tfjs relu6 gradient', () => {
    const x = tf.mul(rand([3, 4, 4, 7], 7), 8);
    const dy = rand([3, 4, 4, 7], 8);
    const y = tf.relu6(x);
    const ours = () => relu6GradFromOutput(dy, y);
    const ref = () => tf.grad((a: tf.Tensor) => tf.relu6(a))(x, dy);
    expectClose(onBackend('wasm', ours), onBackend('cpu', ref), 1e-7);
    expectClose(onBackend('cpu', ours), onBackend('cpu', ref), 1e-7);
    tf.dispose([x, dy, y]);
  });

  // The fast tail's 1x1-convolution gradients: the shapes of the alpha 1.0 tail at 224 (P = 16 x 7 x 7)
  // and odd ones. Bit for bit, since the default engine's weights must not change with these.
  const bits = (t: tf.Tensor) => Array.from(new Uint32Array((t.dataSync() as Float32Array).slice().buffer));
  const pointwiseShapes: [number, number, number][] = [
    [784, 160, 960],
    [784, 960, 320],
    [784, 320, 1280],
    [400, 56, 336],
    [37, 13, 29],
    [5, 3, 1],
  ];

  it('column sums equal ones[1, P] @ x (what the tail used before) bit for bit, and sum in order from zero', () => {
    for (const [p, , c] of pointwiseShapes) {
      tf.tidy(() => {
        const x = tf.mul(tf.randomNormal([p, c], 0, 1, 'float32', p + c), tf.randomUniform([p, c], 1e-8, 1e3, 'float32', c));
        const viaProduct = tf.reshape(tf.matMul(tf.ones([1, p]) as tf.Tensor2D, x as tf.Tensor2D), [c]);
        const ours = columnSumsOf(x as tf.Tensor2D);
        expect(ours.shape).toEqual([c]);
        expect(bits(ours)).toEqual(bits(viaProduct));
        // And what that is: float32 additions over p in order, from 0.
        const v = x.dataSync();
        const seq = new Float32Array(c);
        for (let r = 0; r < p; r++) for (let j = 0; j < c; j++) seq[j] += v[r * c + j];
        expect(bits(ours)).toEqual(Array.from(new Uint32Array(seq.buffer)));
      });
    }
    // On the cpu backend the product is the route (no kernel there).
    tf.setBackend('cpu');
    try {
      const x = tf.tensor2d([1, 2, 3, 4, 5, 6], [3, 2]);
      expect(Array.from(columnSumsOf(x).dataSync())).toEqual([9, 12]);
      x.dispose();
    } finally {
      tf.setBackend('wasm');
    }
  });

  it('a 1x1 filter gradient gives the same bits as x^T dz and as (dz^T x)^T, whichever side is packed', () => {
    for (const [p, ci, co] of pointwiseShapes) {
      tf.tidy(() => {
        const x = tf.randomNormal([p, ci], 0, 1, 'float32', p + ci) as tf.Tensor2D;
        const dz = tf.randomNormal([p, co], 0, 1e-3, 'float32', co) as tf.Tensor2D;
        const a = tf.matMul(tf.transpose(x), dz);
        const b = tf.transpose(tf.matMul(tf.transpose(dz), x));
        expect(bits(a)).toEqual(bits(b));
        const viaKernel = tf.grad((w: tf.Tensor) =>
          tf.sum(
            tf.mul(tf.conv2d(tf.reshape(x, [1, p, 1, ci]) as tf.Tensor4D, w as tf.Tensor4D, 1, 'valid'), tf.reshape(dz, [1, p, 1, co])),
          ),
        )(tf.zeros([1, 1, ci, co]));
        // Conv2DBackpropFilter's 1x1 path (the layers route): the same product again.
        expect(bits(tf.reshape(viaKernel, [ci, co]))).toEqual(bits(a));
      });
    }
  });

  it('Identity (what a gradient saves) shares the data, and each tensor outlives the other', () => {
    const x = rand([4, 7], 9);
    const y = tf.clone(x);
    const expected = Array.from(x.dataSync());
    expect(heapOffset(tf.backend(), y)).toBe(heapOffset(tf.backend(), x));
    x.dispose();
    expect(Array.from(y.dataSync())).toEqual(expected);
    const z = tf.clone(y);
    y.dispose();
    expect(Array.from(z.dataSync())).toEqual(expected);
    z.dispose();
  });

  it('does not leak tensors', () => {
    const before = tf.memory().numTensors;
    const xs = rand([2, 5, 5, 8], 1);
    const w = rand([1, 1, 8, 6], 2);
    const dw = rand([3, 3, 8, 1], 3);
    for (let i = 0; i < 3; i++) {
      tf.tidy(() => {
        tf.grads((a: tf.Tensor, b: tf.Tensor) => tf.sum(tf.conv2d(a as tf.Tensor4D, b as tf.Tensor4D, 1, 'same')))([xs, w]);
        tf.grads((a: tf.Tensor, b: tf.Tensor) => tf.sum(tf.depthwiseConv2d(a as tf.Tensor4D, b as tf.Tensor4D, 1, 'same')))([xs, dw]);
      });
    }
    tf.dispose([xs, w, dw]);
    expect(tf.memory().numTensors).toBe(before);
  });
});
