import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { copyFile, mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { initBackend } from '../core/backend.js';
import { buildClassifier } from '../core/classifier.js';
import { buildMobileNetV2 } from '../core/mobilenet-v2.js';
import { tf } from '../core/tf.js';
import {
  BaseWeightsMismatchError,
  kerasLayerWeights,
  kerasWeightsFileName,
  loadBaseWeights,
  readKerasH5Weights,
  resolveBaseWeights,
  writeKerasH5Weights,
} from '../core/weights/index.js';
import { fillDistinct, keyedWeights } from './helpers/weights-fixtures.js';

const quiet = { log: () => {} };
let tmp: string;
let kerasHome: string;
/** A random-filled alpha 0.35 base written as the official no-top file for 96. */
let officialFile: string;
let expected: Map<string, { shape: number[]; values: Float32Array }>;

function setWeights(model: tf.LayersModel, weights: Map<string, { shape: number[]; values: Float32Array }>) {
  for (const layer of model.layers) {
    if (!layer.weights.length) continue;
    layer.setWeights(
      layer.weights.map((w) => {
        const v = weights.get(`${layer.name}/${w.originalName.split('/').pop()}`);
        if (!v) throw new Error(`fixture lacks ${w.originalName}`);
        return tf.tensor(v.values, v.shape);
      }),
    );
  }
}

beforeAll(async () => {
  await initBackend('auto', () => {});
  tmp = await mkdtemp(path.join(os.tmpdir(), 'edgetune-h5-'));
  kerasHome = path.join(tmp, 'keras');
  process.env.KERAS_HOME = kerasHome;
  process.env.EDGETUNE_CACHE_DIR = path.join(tmp, 'cache');
  const src = buildMobileNetV2({ alpha: 0.35, inputSize: 96 });
  expected = fillDistinct(keyedWeights(src), 7);
  setWeights(src, expected);
  officialFile = path.join(tmp, kerasWeightsFileName(0.35, 96));
  await writeKerasH5Weights(officialFile, kerasLayerWeights(src));
  src.dispose();
});
afterAll(async () => {
  await rm(tmp, { recursive: true, force: true });
});
beforeEach(() => {
  delete process.env.EDGETUNE_BASE_WEIGHTS;
});

describe('Keras .h5 weights (files written in the keras.applications layout)', () => {
  it('writes the Keras layout: layer_names, weight_names and <layer>/<layer>/<weight>:0 datasets', async () => {
    const h5 = await import('h5wasm/node');
    await h5.ready;
    const f = new h5.File(officialFile, 'r');
    try {
      const names = f.attrs.layer_names.value as string[];
      expect(names.length).toBe(155);
      expect(names[119]).toBe('block_13_expand_relu');
      const g = f.get('block_13_expand') as InstanceType<typeof h5.Group>;
      expect(g.attrs.weight_names.value).toEqual(['block_13_expand/kernel:0']);
      expect(g.attrs.weight_names.dtype).toMatch(/^S\d+$/);
      expect((f.get('block_13_expand/block_13_expand/kernel:0') as InstanceType<typeof h5.Dataset>).shape).toEqual([1, 1, 32, 192]);
      expect((f.get('bn_Conv1') as InstanceType<typeof h5.Group>).attrs.weight_names.value).toEqual([
        'bn_Conv1/gamma:0',
        'bn_Conv1/beta:0',
        'bn_Conv1/moving_mean:0',
        'bn_Conv1/moving_variance:0',
      ]);
    } finally {
      f.close();
    }
  });

  it('loads every base weight by name into a classifier at another size, and hashes the file', async () => {
    const model = buildClassifier({ alpha: 0.35, inputSize: 64, numClasses: 2 });
    const before = tf.memory().numTensors;
    const r = await loadBaseWeights(model, officialFile, quiet);
    expect(tf.memory().numTensors).toBe(before);
    expect(r).toMatchObject({ kind: 'keras-h5', alpha: 0.35, top: false, count: 260, source: officialFile });
    expect(r.sha256).toBe(
      createHash('sha256')
        .update(await readFile(officialFile))
        .digest('hex'),
    );
    const got = keyedWeights(model);
    for (const [k, w] of expected) expect(Array.from(got.get(k)?.values ?? []), k).toEqual(Array.from(w.values));
    model.dispose();
  });

  it('reads a full-model .h5 (weights under model_weights) with the ImageNet top', async () => {
    const src = buildMobileNetV2({ alpha: 0.35, inputSize: 32, includeTop: true, classes: 5 });
    const file = path.join(tmp, 'full.h5');
    await writeKerasH5Weights(file, kerasLayerWeights(src), { modelWeights: true });
    const want = Array.from(src.getLayer('predictions').getWeights()[0].dataSync());
    src.dispose();
    const model = buildMobileNetV2({ alpha: 0.35, inputSize: 48, includeTop: true, classes: 5 });
    expect(await loadBaseWeights(model, file, { ...quiet, requireTop: true })).toMatchObject({ top: true, count: 262 });
    expect(Array.from(model.getLayer('predictions').getWeights()[0].dataSync())).toEqual(want);
    model.dispose();
    // Same file, a 1000-class top: the predictions shape differs, so only the base loads.
    const other = buildMobileNetV2({ alpha: 0.35, inputSize: 32, includeTop: true });
    await expect(loadBaseWeights(other, file, { ...quiet, requireTop: true })).rejects.toThrow(/has no ImageNet top .* matching the model/);
    expect(await loadBaseWeights(other, file, quiet)).toMatchObject({ top: false, count: 260 });
    other.dispose();
  });

  it('lists the weights an incomplete .h5 lacks', async () => {
    const src = buildMobileNetV2({ alpha: 0.35, inputSize: 32 });
    const layers = kerasLayerWeights(src).filter((l) => l.name !== 'block_5_project_BN');
    src.dispose();
    const file = path.join(tmp, 'partial.h5');
    await writeKerasH5Weights(file, layers);
    const model = buildMobileNetV2({ alpha: 0.35, inputSize: 32 });
    const err = await loadBaseWeights(model, file, quiet).catch((e) => e);
    expect(err).toBeInstanceOf(BaseWeightsMismatchError);
    expect(err.missing).toEqual(['gamma', 'beta', 'moving_mean', 'moving_variance'].map((w) => `block_5_project_BN/${w}`));
    model.dispose();
  });

  it('refuses a file that is not HDF5, naming it', async () => {
    const file = path.join(tmp, 'fake.h5');
    await writeFile(file, 'not hdf5 at all');
    await expect(readKerasH5Weights(file)).rejects.toThrow(/fake\.h5 is not an HDF5 file/);
    await expect(readKerasH5Weights(path.join(tmp, 'missing.h5'))).rejects.toThrow(/ENOENT/);
  });

  it('downloads a remote official .h5 once into ~/.keras/models', async () => {
    let hits = 0;
    const server = http.createServer(async (_req, res) => {
      hits++;
      res.end(await readFile(officialFile));
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/${path.basename(officialFile)}`;
    const model = buildMobileNetV2({ alpha: 0.35, inputSize: 32 });
    await loadBaseWeights(model, url, quiet);
    await loadBaseWeights(model, url, quiet);
    await new Promise((r) => server.close(r));
    expect(hits).toBe(1);
    expect(existsSync(path.join(kerasHome, 'models', path.basename(officialFile)))).toBe(true);
    await rm(path.join(kerasHome, 'models'), { recursive: true });
    model.dispose();
  });
});

describe('resolveBaseWeights: flag > env > ~/.keras/models > download (online only) > nsfwjs', () => {
  it('explicit flag wins, then EDGETUNE_BASE_WEIGHTS', async () => {
    const env = { EDGETUNE_BASE_WEIGHTS: '/env/model.json' };
    expect(await resolveBaseWeights({ baseWeights: '/flag/model.json', inputSize: 160, env, online: false })).toMatchObject({
      source: '/flag/model.json',
      origin: 'flag',
    });
    expect(await resolveBaseWeights({ inputSize: 160, env, online: false })).toMatchObject({ source: '/env/model.json', origin: 'env' });
  });

  it('uses the cached official file for that alpha and size, else another size of that alpha', async () => {
    const models = path.join(kerasHome, 'models');
    await mkdir(models, { recursive: true });
    const at160 = path.join(models, kerasWeightsFileName(0.35, 160));
    await copyFile(officialFile, at160);
    expect(await resolveBaseWeights({ alpha: 0.35, inputSize: 160, env: {}, online: false })).toMatchObject({
      source: at160,
      origin: 'keras-cache',
    });
    expect(await resolveBaseWeights({ alpha: 0.35, inputSize: 300, env: {}, online: false })).toMatchObject({
      source: at160,
      origin: 'keras-cache',
    });
    await expect(resolveBaseWeights({ alpha: 0.35, inputSize: 160, env: {}, online: false, includeTop: true })).rejects.toThrow(
      /with the ImageNet top/,
    );
    // loadBaseWeights without a source resolves the same way, from the model's own alpha and size.
    delete process.env.EDGETUNE_BASE_WEIGHTS;
    const model = buildClassifier({ alpha: 0.35, inputSize: 160, numClasses: 2 });
    expect(await loadBaseWeights(model, undefined, { ...quiet, online: false })).toMatchObject({
      source: at160,
      resolvedBy: 'keras-cache',
      kind: 'keras-h5',
    });
    model.dispose();
    await rm(models, { recursive: true });
  });

  it('offline with nothing cached: nsfwjs for alpha 1.0, a clear error for other alphas', async () => {
    const r = await resolveBaseWeights({ alpha: 1.0, inputSize: 160, env: {}, online: false });
    expect(r).toMatchObject({ source: 'nsfwjs', origin: 'nsfwjs' });
    expect(r.notes.join(' ')).toMatch(/offline/);
    await expect(resolveBaseWeights({ alpha: 0.35, inputSize: 160, env: {}, online: false })).rejects.toThrow(
      /no ImageNet MobileNetV2 weights for alpha 0.35 .*offline.*only has alpha 1\.0.*--base-weights/,
    );
  });

  it('online: downloads the official file into ~/.keras/models', async () => {
    const server = http.createServer(async (req, res) => {
      if (req.url === `/mirror/${path.basename(officialFile).replace('_96_', '_160_')}`)
        res.end(req.method === 'HEAD' ? undefined : await readFile(officialFile));
      else {
        res.statusCode = 404;
        res.end();
      }
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    process.env.EDGETUNE_KERAS_WEIGHTS_URL = `http://127.0.0.1:${(server.address() as AddressInfo).port}/mirror`;
    try {
      const r = await resolveBaseWeights({ alpha: 0.35, inputSize: 160, env: {}, online: true, log: () => {} });
      expect(r).toMatchObject({ origin: 'download', source: path.join(kerasHome, 'models', kerasWeightsFileName(0.35, 160)) });
      expect(
        createHash('sha256')
          .update(await readFile(r.source))
          .digest('hex'),
      ).toBe(
        createHash('sha256')
          .update(await readFile(officialFile))
          .digest('hex'),
      );
      // 404 for another alpha: reported, then the alpha rule applies.
      await expect(resolveBaseWeights({ alpha: 0.5, inputSize: 160, env: {}, online: true, log: () => {} })).rejects.toThrow(
        /download failed: .*HTTP 404/,
      );
    } finally {
      delete process.env.EDGETUNE_KERAS_WEIGHTS_URL;
      await new Promise((r) => server.close(r));
      await rm(path.join(kerasHome, 'models'), { recursive: true, force: true });
    }
  });

  it('online but unreachable fails fast and says so', async () => {
    // A closed local port stands in for "no network": the probe must fail in well under a second.
    const logs: string[] = [];
    const t = Date.now();
    const saved = process.env.EDGETUNE_KERAS_WEIGHTS_URL;
    process.env.EDGETUNE_KERAS_WEIGHTS_URL = 'http://127.0.0.1:9/';
    try {
      const r = await resolveBaseWeights({ alpha: 1.0, inputSize: 160, env: {}, online: true, log: (l) => logs.push(l) });
      expect(r.origin).toBe('nsfwjs');
      expect(r.notes.join(' ')).toMatch(/download failed: cannot reach 127\.0\.0\.1:9 .*offline\?/);
      expect(logs.join('\n')).toMatch(/could not download the official Keras weights/);
    } finally {
      if (saved === undefined) delete process.env.EDGETUNE_KERAS_WEIGHTS_URL;
      else process.env.EDGETUNE_KERAS_WEIGHTS_URL = saved;
    }
    expect(Date.now() - t).toBeLessThan(5000);
  });
});
