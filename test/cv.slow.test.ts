import { createHash } from 'node:crypto';
import { mkdtemp, readFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { initBackend } from '../core/backend.js';
import { crossValidate, stratifiedFolds } from '../training/cv.js';
import { listDataset } from '../training/dataset.js';
import { resolveTrainOptions } from '../training/options.js';
import { train } from '../training/train.js';
import { makeDataset } from './helpers/images.js';

const sha = async (f: string) =>
  createHash('sha256')
    .update(await readFile(f))
    .digest('hex');

describe('edgetune cv (tiny, in process)', () => {
  beforeAll(async () => {
    process.env.EDGETUNE_OFFLINE = '1';
    delete process.env.EDGETUNE_BASE_WEIGHTS;
    await initBackend();
  });

  it('trains every fold; a fold served from the shared view cache gives the weights a plain run on that split gives', async () => {
    const dir = await mkdtemp(path.join(os.tmpdir(), 'edgetune-cv-'));
    const data = await makeDataset(path.join(dir, 'data'), { red: 8, blue: 8 }, 36);
    const opts = resolveTrainOptions({ data, out: dir, imageSize: 32, batchSize: 8, epochs: 2, fineTuneEpochs: 1, workers: 0 });
    const out = path.join(dir, 'folds');
    const r = await crossValidate(opts, { folds: 2, seeds: [42], out }, () => {});
    expect(r.runs.map((x) => [x.fold, x.train, x.validation])).toEqual([
      [1, 8, 8],
      [2, 8, 8],
    ]);
    // Fold 1 computes every un-augmented view once (validation, then phase 1's training images; the
    // post-training pass reuses the boundary rows phase 1 kept and asks for no view); fold 2 reuses all 16.
    expect(r.views).toEqual({ computed: 16, reused: 16 });
    expect(r.accuracy.n).toBe(2);
    expect(r.auc?.n).toBe(2);
    expect(r.selectionFree).toBe(true);

    // Fold 2 (all from the cache) against a plain train() on the same split, no cache.
    const split = stratifiedFolds(await listDataset(data), 2, 42)[1];
    const plain = await train({ ...opts, out: path.join(dir, 'plain') }, () => {}, undefined, undefined, split);
    plain.model.dispose();
    plain.close();
    expect(await sha(path.join(out, 'seed-42-fold-2', 'weights.bin'))).toBe(await sha(path.join(dir, 'plain', 'weights.bin')));
    expect(r.runs[1].accuracy).toBe((plain.manifest.metrics.fineTuned ?? plain.manifest.metrics.frozen).valAccuracy);
  }, 300_000);

  it('refuses --test-split', async () => {
    const opts = resolveTrainOptions({ data: '/nowhere', out: '/tmp/x', testSplit: 0.2 });
    await expect(crossValidate(opts, { folds: 3, seeds: [1] }, () => {})).rejects.toThrow(/--test-split does not apply/);
  });
});
