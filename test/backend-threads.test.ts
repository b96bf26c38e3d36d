import { describe, expect, it } from 'vitest';
import { describeBackend, initBackend } from '../core/backend.js';
import { tf } from '../core/tf.js';

// Its own file: the threaded module is process-wide once started.
describe('threaded SIMD WASM under Node (opt-in)', () => {
  it('starts with 2 XNNPACK threads and computes what the cpu backend computes', async () => {
    const lines: string[] = [];
    const info = await initBackend('wasm', (l) => lines.push(l), { wasmThreads: 2 });
    expect(info.name).toBe('wasm');
    expect(info.threads).toBe(2);
    expect(describeBackend(info)).toMatch(/2 threads, threaded build/);
    expect(lines.join('\n')).toMatch(/wasm \(SIMD, 2 threads/);
    const x = tf.randomUniform([2, 33, 33, 16], -1, 1, 'float32', 1);
    const k = tf.randomUniform([3, 3, 16, 24], -1, 1, 'float32', 2);
    const y = tf.conv2d(x as tf.Tensor4D, k as tf.Tensor4D, 2, 'same');
    const got = await y.data();
    await tf.setBackend('cpu');
    const xc = tf.tensor(await x.data(), x.shape);
    const kc = tf.tensor(await k.data(), k.shape);
    const ref = await tf.conv2d(xc as tf.Tensor4D, kc as tf.Tensor4D, 2, 'same').data();
    let maxDiff = 0;
    for (let i = 0; i < ref.length; i++) maxDiff = Math.max(maxDiff, Math.abs(ref[i] - got[i]));
    expect(maxDiff).toBeLessThan(1e-4);
  });
});
