import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { initBackend } from '../core/backend.js';
import { tf } from '../core/tf.js';
import { assertTfjsVersion, readRangeSync, setLearningRate, TFJS_VERSION } from '../core/tfjs-internals.js';

describe('tfjs internals', () => {
  it('accepts the installed tfjs packages and names the ones that differ', () => {
    expect(() => assertTfjsVersion()).not.toThrow();
    expect(() => assertTfjsVersion({ '@tensorflow/tfjs-core': '4.23.0', '@tensorflow/tfjs-layers': TFJS_VERSION })).toThrow(
      /relies on tfjs 4\.22\.0 internals.*@tensorflow\/tfjs-core 4\.23\.0: install the pinned versions/,
    );
  });

  it('package.json pins every tfjs package to exactly that version', () => {
    const pkg = JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8')) as { dependencies: Record<string, string> };
    const tfjs = Object.entries(pkg.dependencies).filter(([name]) => name.startsWith('@tensorflow/tfjs'));
    expect(tfjs.length).toBeGreaterThanOrEqual(2);
    for (const [name, range] of tfjs) expect(`${name}@${range}`).toBe(`${name}@${TFJS_VERSION}`);
  });

  it('reads a range of a tensor on wasm and cpu', async () => {
    for (const backend of ['wasm', 'cpu'] as const) {
      await initBackend(backend, () => {});
      const t = tf.range(0, 12).reshape([4, 3]);
      expect(Array.from(readRangeSync(t, 3, 9))).toEqual([3, 4, 5, 6, 7, 8]);
      t.dispose();
    }
    await initBackend('wasm', () => {});
  });

  it("sets Adam's learning rate, which its next step uses", () => {
    const step = (lr: number) => {
      const v = tf.variable(tf.scalar(1));
      const opt = tf.train.adam(0.5);
      setLearningRate(opt, lr);
      opt.minimize(() => tf.square(v) as tf.Scalar);
      const out = v.dataSync()[0];
      v.dispose();
      opt.dispose();
      return out;
    };
    // Adam's first step moves by ~lr whatever the gradient's size.
    expect(step(0.1)).toBeCloseTo(0.9, 4);
    expect(step(0.01)).toBeCloseTo(0.99, 4);
  });
});
