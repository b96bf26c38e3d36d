// The official release layout at alpha 1.0 with its ImageNet top (Logits), written by h5py from the
// shared tfjs weights (test/fixtures-py/keras_layouts.py): the same ImageNet top-5 as the tfjs weights.
import { mkdtemp, readdir, readFile, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadImagenetModel, topK } from '../cli/commands/imagenet.js';
import { initBackend } from '../core/backend.js';
import { decodeImage } from '../core/image.js';
import { buildMobileNetV2 } from '../core/mobilenet-v2.js';
import { loadBaseWeights } from '../core/weights/index.js';
import { readTfjsWeights } from '../core/weights/tfjs-source.js';
import { ALPACA_DIR, hasAlpaca, hasWeights10, skipReason, WEIGHTS_1_0 } from './helpers/shared.js';
import { PYTHON_H5PY, writeFixtureSpec, writeKerasLayout } from './helpers/weights-fixtures.js';

let tmp: string;
beforeAll(async () => {
  await initBackend('auto', () => {});
  tmp = await mkdtemp(path.join(os.tmpdir(), 'edgetune-release-'));
});
afterAll(async () => {
  await rm(tmp, { recursive: true, force: true });
});

const missing10 = !hasWeights10
  ? skipReason('weights/mobilenet_v2_1.0_224_imagenet')
  : !hasAlpaca
    ? skipReason('datasets/alpaca')
    : !PYTHON_H5PY
      ? 'skipped: no python3 with h5py (Debian python3-h5py)'
      : undefined;

describe.skipIf(!!missing10)('alpha 1.0 with the ImageNet top (Logits) in the release layout: the same top-5 as the tfjs weights', () => {
  it('legacy and mixed names, with the top; the same file serves a no-top base', async () => {
    const src = await readTfjsWeights(WEIGHTS_1_0);
    const spec = await writeFixtureSpec(path.join(tmp, 'a100'), src.weights);
    const photos = (await readdir(path.join(ALPACA_DIR, 'alpaca'))).sort().slice(0, 4);
    const images = await Promise.all(
      photos.map(async (f) => decodeImage(await readFile(path.join(ALPACA_DIR, 'alpaca', f)), { size: 224 })),
    );
    const tfjs = await loadImagenetModel({ baseWeights: WEIGHTS_1_0, log: () => {} });
    const want = topK(tfjs.model, images, 5);
    tfjs.model.dispose();
    for (const names of ['legacy', 'mixed']) {
      const file = writeKerasLayout(spec, path.join(tmp, `release-${names}.h5`), 'keras2', ['--names', names, '--top-name', 'Logits']);
      const logs: string[] = [];
      const h5 = await loadImagenetModel({ baseWeights: file, log: (l) => logs.push(l) });
      expect(logs.join('\n')).toMatch(/262 tensors: .*order checked, ImageNet top Logits -> predictions, alpha 1\.0/);
      expect(topK(h5.model, images, 5)).toEqual(want);
      h5.model.dispose();
    }
    expect(want.some((scores) => scores.some((s) => s.index === 355))).toBe(true);
    // A base-only model takes the base prefix of the with-top file.
    const base = buildMobileNetV2({ alpha: 1.0, inputSize: 96 });
    expect(await loadBaseWeights(base, path.join(tmp, 'release-legacy.h5'), { log: () => {} })).toMatchObject({ top: false, count: 260 });
    base.dispose();
  });
});

describe.skipIf(!missing10)('alpha 1.0 Keras release layout', () => {
  it.skip(missing10 ?? '', () => {});
});
