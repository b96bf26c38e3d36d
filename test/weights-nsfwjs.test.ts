import { beforeAll, describe, expect, it } from 'vitest';
import { initBackend } from '../core/backend.js';
import { buildClassifier } from '../core/classifier.js';
import { buildMobileNetV2 } from '../core/mobilenet-v2.js';
import { tf } from '../core/tf.js';
import {
  BaseWeightsMismatchError,
  isBaseLayerName,
  loadBaseWeights,
  modelWeightShapes,
  NSFWJS_WARNING,
  readBaseWeights,
} from '../core/weights/index.js';
import { nsfwjsDir } from '../core/weights/nsfwjs-source.js';

beforeAll(async () => {
  await initBackend('auto', () => {});
});

describe('nsfwjs bundled MobileNetV2 (offline fallback)', () => {
  it('finds the package folder although its exports block deep imports', () => {
    expect(nsfwjsDir()).toMatch(/node_modules[\\/]nsfwjs$/);
  });

  it('holds exactly our alpha 1.0 base weights, with our shapes, up to out_relu', async () => {
    const w = await readBaseWeights('nsfwjs', () => {});
    expect(w).toMatchObject({ kind: 'nsfwjs', alpha: 1.0, warning: NSFWJS_WARNING });
    expect(w.sha256).toMatch(/^[0-9a-f]{64}$/);
    const model = buildMobileNetV2({ alpha: 1.0, inputSize: 32 });
    const ours = modelWeightShapes(model);
    model.dispose();
    expect([...w.weights.keys()].sort()).toEqual([...ours.keys()].sort());
    for (const [k, shape] of ours) expect(w.weights.get(k)?.shape, k).toEqual(shape);
    // nsfwjs' own head (dense_1..3) is dropped.
    expect([...w.weights.keys()].every((k) => isBaseLayerName(k.split('/')[0]))).toBe(true);
  });

  it('loads into a 160 classifier quickly, warns loudly, leaks nothing, and gives finite features', async () => {
    const model = buildClassifier({ alpha: 1.0, inputSize: 160, numClasses: 2 });
    const logs: string[] = [];
    const before = tf.memory().numTensors;
    const t = performance.now();
    const r = await loadBaseWeights(model, 'nsfwjs', { log: (l) => logs.push(l) });
    const ms = performance.now() - t;
    expect(tf.memory().numTensors).toBe(before);
    expect(r).toMatchObject({ kind: 'nsfwjs', alpha: 1.0, count: 260, top: false });
    expect(r.warning).toMatch(/re-trained .* 0\.62-0\.65 .* 0\.89-0\.95/);
    expect(logs.join('\n')).toContain(`!!! ${NSFWJS_WARNING}`);
    expect(ms).toBeLessThan(5000);
    const out = tf.tidy(() => model.predict(tf.randomUniform([1, 160, 160, 3], 0, 255)) as tf.Tensor);
    const p = out.dataSync()[0];
    out.dispose();
    expect(Number.isFinite(p) && p > 0 && p < 1).toBe(true);
    model.dispose();
  });

  it('is alpha 1.0 only: another alpha gets a clear error', async () => {
    const model = buildMobileNetV2({ alpha: 0.35, inputSize: 32 });
    const err = await loadBaseWeights(model, 'nsfwjs', { log: () => {} }).catch((e) => e);
    expect(err).toBeInstanceOf(BaseWeightsMismatchError);
    expect(err.message).toMatch(/alpha 1.0 but the model is alpha 0.35/);
    model.dispose();
  });
});
