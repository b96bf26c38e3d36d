import { mkdtemp, readFile, rm } from 'node:fs/promises';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { initBackend } from '../core/backend.js';
import { buildClassifier } from '../core/classifier.js';
import { ALPHAS, buildMobileNetV2 } from '../core/mobilenet-v2.js';
import { tf } from '../core/tf.js';
import { BaseWeightsMismatchError, inferAlpha, loadBaseWeights, modelWeightShapes } from '../core/weights/index.js';
import { hasWeights10, hasWeights035, skipReason, WEIGHTS_0_35, WEIGHTS_1_0 } from './helpers/shared.js';
import { fillDistinct, keyedWeights, writeTfjsWeights } from './helpers/weights-fixtures.js';

const quiet = { log: () => {} };
let tmp: string;

beforeAll(async () => {
  await initBackend('auto', () => {});
  tmp = await mkdtemp(path.join(os.tmpdir(), 'edgetune-weights-'));
  process.env.EDGETUNE_CACHE_DIR = path.join(tmp, 'cache');
});
afterAll(async () => {
  await rm(tmp, { recursive: true, force: true });
});

function expectSameBase(model: tf.LayersModel, expected: Map<string, { values: Float32Array }>) {
  const got = keyedWeights(model);
  let checked = 0;
  for (const [k, w] of got) {
    if (k.startsWith('logits/') || k.startsWith('predictions/')) continue;
    const want = expected.get(k);
    expect(want, k).toBeDefined();
    expect(Array.from(w.values), k).toEqual(Array.from(want?.values ?? []));
    checked++;
  }
  return checked;
}

describe('tfjs layers source (generated files)', () => {
  it('loads every base weight by name into a classifier of another input size, without leaks', async () => {
    const src = buildMobileNetV2({ alpha: 0.35, inputSize: 96 });
    const weights = fillDistinct(keyedWeights(src));
    src.dispose();
    const file = await writeTfjsWeights(path.join(tmp, 'a035'), weights, { prefix: 'mobilenetv2_0.35_96/' });
    const model = buildClassifier({ alpha: 0.35, inputSize: 64, numClasses: 3 });
    const logitsBefore = Array.from(model.getLayer('logits').getWeights()[0].dataSync());
    const before = tf.memory().numTensors;
    const r = await loadBaseWeights(model, file, quiet);
    expect(tf.memory().numTensors).toBe(before);
    expect(r).toMatchObject({ kind: 'tfjs', alpha: 0.35, top: false, count: 260 });
    expect(r.sha256).toBe(
      (await import('node:crypto'))
        .createHash('sha256')
        .update(await readFile(path.join(tmp, 'a035/weights.bin')))
        .digest('hex'),
    );
    expect(expectSameBase(model, weights)).toBe(260);
    // The classifier head is not part of the base: untouched.
    expect(Array.from(model.getLayer('logits').getWeights()[0].dataSync())).toEqual(logitsBefore);
    model.dispose();
  });

  it('accepts a folder and a file:// URI', async () => {
    const model = buildMobileNetV2({ alpha: 0.35, inputSize: 32 });
    await expect(loadBaseWeights(model, path.join(tmp, 'a035'), quiet)).resolves.toMatchObject({ count: 260 });
    await expect(loadBaseWeights(model, `file://${path.join(tmp, 'a035/model.json')}`, quiet)).resolves.toMatchObject({ count: 260 });
    model.dispose();
  });

  it('names every missing and mismatched weight, and sets nothing', async () => {
    const src = buildMobileNetV2({ alpha: 0.35, inputSize: 32 });
    const weights = fillDistinct(keyedWeights(src));
    src.dispose();
    weights.delete('block_13_expand/kernel');
    weights.delete('Conv_1_bn/moving_variance');
    const bias = weights.get('bn_Conv1/beta');
    if (!bias) throw new Error('fixture');
    weights.set('bn_Conv1/beta', { shape: [17], values: new Float32Array(17) });
    const file = await writeTfjsWeights(path.join(tmp, 'broken'), weights);
    const model = buildMobileNetV2({ alpha: 0.35, inputSize: 32 });
    const conv1 = Array.from(model.getLayer('Conv1').getWeights()[0].dataSync());
    const err = await loadBaseWeights(model, file, quiet).catch((e) => e);
    expect(err).toBeInstanceOf(BaseWeightsMismatchError);
    expect(err.missing).toEqual(['block_13_expand/kernel', 'Conv_1_bn/moving_variance']);
    expect(err.mismatched).toEqual(['bn_Conv1/beta: model [16] vs weights [17]']);
    expect(err.message).toMatch(/2 missing, 1 mismatched/);
    expect(err.message).toContain('block_13_expand/kernel');
    expect(Array.from(model.getLayer('Conv1').getWeights()[0].dataSync())).toEqual(conv1);
    model.dispose();
  });

  it('says when the weights are for another alpha', async () => {
    const model = buildMobileNetV2({ alpha: 0.5, inputSize: 32 });
    const err = await loadBaseWeights(model, path.join(tmp, 'a035'), quiet).catch((e) => e);
    expect(err).toBeInstanceOf(BaseWeightsMismatchError);
    expect(err.message).toMatch(/alpha 0.35 but the model is alpha 0.5/);
    model.dispose();
  });

  it('clear errors for a missing file and a model.json without weights', async () => {
    const model = buildMobileNetV2({ alpha: 0.35, inputSize: 32 });
    await expect(loadBaseWeights(model, path.join(tmp, 'nope/model.json'), quiet)).rejects.toThrow(/cannot read tfjs weights .*ENOENT/);
    const bad = path.join(tmp, 'bad.json');
    await (await import('node:fs/promises')).writeFile(bad, '{"modelTopology":{}}');
    await expect(loadBaseWeights(model, bad, quiet)).rejects.toThrow(/not a tfjs layers model.json with a weightsManifest/);
    model.dispose();
  });

  it('downloads an http(s) model once and then reads it from the cache', async () => {
    const dir = path.join(tmp, 'a035');
    let hits = 0;
    const server = http.createServer(async (req, res) => {
      hits++;
      try {
        res.end(await readFile(path.join(dir, path.basename(req.url ?? ''))));
      } catch {
        res.statusCode = 404;
        res.end();
      }
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/w/model.json`;
    const model = buildMobileNetV2({ alpha: 0.35, inputSize: 32 });
    const first = await loadBaseWeights(model, url, quiet);
    expect(hits).toBe(2);
    await new Promise((r) => server.close(r));
    const second = await loadBaseWeights(model, url, quiet);
    expect(second.sha256).toBe(first.sha256);
    expect(hits).toBe(2);
    await expect(loadBaseWeights(model, url.replace('model.json', 'other/model.json'), quiet)).rejects.toThrow(
      /cannot download http:\/\/127\.0\.0\.1:\d+\/w\/other\/model\.json/,
    );
    model.dispose();
  });
});

describe('inferAlpha', () => {
  it.each(ALPHAS.map((a) => [a]))('infers alpha %s from the weight shapes', (alpha) => {
    const model = buildMobileNetV2({ alpha, inputSize: 32 });
    expect(inferAlpha(modelWeightShapes(model))).toBe(alpha);
    model.dispose();
  });
  it('refuses weights that are not MobileNetV2', () => {
    expect(() => inferAlpha(new Map([['Conv1/kernel', [3, 3, 3, 20]]]))).toThrow(/match no alpha/);
    expect(() => inferAlpha(new Map([['dense/kernel', [3, 4]]]))).toThrow(/neither block_16_project\/kernel nor Conv1\/kernel/);
    expect(() => inferAlpha({ 'Conv1/kernel': [3, 3, 3, 16] })).toThrow(/0.35 or 0.5/);
  });
});

describe.skipIf(!hasWeights10 || !hasWeights035)('shared ImageNet tfjs weights', () => {
  it('alpha 1.0 with its top into a 224 model with the top; the base alone into a 160 classifier', async () => {
    const full = buildMobileNetV2({ alpha: 1.0, inputSize: 224, includeTop: true });
    const r = await loadBaseWeights(full, WEIGHTS_1_0, quiet);
    expect(r).toMatchObject({ kind: 'tfjs', alpha: 1.0, top: true, count: 262 });
    expect(r.sha256).toBe('5afe0155be25f7328a51ca1239241e69a36b68d2d542ccbe805d7cd1dc5925c7');
    full.dispose();
    const clf = buildClassifier({ alpha: 1.0, inputSize: 160, numClasses: 2 });
    expect(await loadBaseWeights(clf, WEIGHTS_1_0, quiet)).toMatchObject({ alpha: 1.0, top: false, count: 260 });
    clf.dispose();
  });
  it('alpha 0.35 (no top); requireTop fails clearly', async () => {
    const clf = buildClassifier({ alpha: 0.35, inputSize: 160, numClasses: 2 });
    const r = await loadBaseWeights(clf, WEIGHTS_0_35, quiet);
    expect(r).toMatchObject({ alpha: 0.35, sha256: 'e159deb3afa15bc63a53edb3eb31d0d6de1a25f0d8d72d9b8372b5088a902a8a' });
    clf.dispose();
    const top = buildMobileNetV2({ alpha: 0.35, inputSize: 224, includeTop: true });
    await expect(loadBaseWeights(top, WEIGHTS_0_35, { ...quiet, requireTop: true })).rejects.toThrow(/has no ImageNet top/);
    top.dispose();
  });
});
describe.skipIf(hasWeights10 && hasWeights035)('shared ImageNet tfjs weights', () => {
  it.skip(skipReason('weights/mobilenet_v2_{1.0,0.35}_224_imagenet'), () => {});
});
