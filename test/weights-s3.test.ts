import { mkdtemp, readFile, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { initBackend } from '../core/backend.js';
import { buildMobileNetV2 } from '../core/mobilenet-v2.js';
import { putObject } from '../core/s3/client.js';
import { type EmbeddedS3, startS3rver } from '../core/s3/embedded.js';
import { kerasLayerWeights, kerasWeightsFileName, loadBaseWeights, writeKerasH5Weights } from '../core/weights/index.js';
import { fillDistinct, keyedWeights, writeTfjsWeights } from './helpers/weights-fixtures.js';

let tmp: string;
let s3: EmbeddedS3;
let weights: ReturnType<typeof keyedWeights>;

beforeAll(async () => {
  await initBackend('auto', () => {});
  tmp = await mkdtemp(path.join(os.tmpdir(), 'edgetune-w-s3-'));
  process.env.EDGETUNE_CACHE_DIR = path.join(tmp, 'cache');
  process.env.KERAS_HOME = path.join(tmp, 'keras');
  s3 = await startS3rver({ dir: path.join(tmp, 's3'), buckets: ['weights'], silent: true });
  process.env.EDGETUNE_S3_ENDPOINT = s3.endpoint;
  const src = buildMobileNetV2({ alpha: 0.35, inputSize: 32 });
  weights = fillDistinct(keyedWeights(src), 3);
  src.dispose();
  const dir = path.join(tmp, 'tfjs');
  await writeTfjsWeights(dir, weights);
  await putObject('s3://weights/base/a035/model.json', await readFile(path.join(dir, 'model.json')));
  await putObject('s3://weights/base/a035/weights.bin', await readFile(path.join(dir, 'weights.bin')));
});
afterAll(async () => {
  delete process.env.EDGETUNE_S3_ENDPOINT;
  await s3?.close();
  await rm(tmp, { recursive: true, force: true });
});

describe('s3:// sources', () => {
  it('reads a tfjs layers model from s3 (model.json URI or its folder)', async () => {
    const model = buildMobileNetV2({ alpha: 0.35, inputSize: 48 });
    for (const uri of ['s3://weights/base/a035/model.json', 's3://weights/base/a035']) {
      expect(await loadBaseWeights(model, uri, { log: () => {} })).toMatchObject({ kind: 'tfjs', alpha: 0.35, count: 260, source: uri });
    }
    const got = keyedWeights(model);
    for (const [k, w] of weights) expect(Array.from(got.get(k)?.values ?? []), k).toEqual(Array.from(w.values));
    model.dispose();
  });

  it('downloads an s3 .h5 into the cache', async () => {
    const src = buildMobileNetV2({ alpha: 0.35, inputSize: 32 });
    const file = path.join(tmp, kerasWeightsFileName(0.35, 224));
    await writeKerasH5Weights(file, kerasLayerWeights(src));
    src.dispose();
    await putObject(`s3://weights/keras/${path.basename(file)}`, await readFile(file));
    const model = buildMobileNetV2({ alpha: 0.35, inputSize: 32 });
    expect(await loadBaseWeights(model, `s3://weights/keras/${path.basename(file)}`, { log: () => {} })).toMatchObject({
      kind: 'keras-h5',
      count: 260,
    });
    expect((await readFile(path.join(tmp, 'keras/models', path.basename(file)))).equals(await readFile(file))).toBe(true);
    model.dispose();
  });

  it('a missing object is a clear error naming it', async () => {
    const model = buildMobileNetV2({ alpha: 0.35, inputSize: 32 });
    await expect(loadBaseWeights(model, 's3://weights/nope/model.json', { log: () => {} })).rejects.toThrow(
      /cannot read s3:\/\/weights\/nope\/model\.json/,
    );
    model.dispose();
  });
});
