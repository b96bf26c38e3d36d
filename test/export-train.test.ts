import { existsSync } from 'node:fs';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { initBackend } from '../core/backend.js';
import { ExportsSchema } from '../core/export/export-formats.js';
import { exportModelFormats } from '../training/export-formats.js';
import { runTraining } from '../training/job.js';
import { resolveTrainOptions } from '../training/options.js';
import { makeDataset } from './helpers/images.js';

// train --export on a tiny generated dataset (offline fallback weights), then `edgetune export` of the result.
describe('train --export and edgetune export', () => {
  let dir: string;
  let root: string;
  let out: string;
  let calibration: string[] = [];
  let validation: string[] = [];

  beforeAll(async () => {
    process.env.EDGETUNE_OFFLINE = '1';
    delete process.env.EDGETUNE_BASE_WEIGHTS;
    await initBackend();
    dir = await mkdtemp(path.join(os.tmpdir(), 'edgetune-export-'));
    root = await makeDataset(path.join(dir, 'data'), { red: 10, blue: 10 }, 40);
    out = path.join(dir, 'model');
    const opts = resolveTrainOptions({
      data: root,
      out,
      imageSize: 32,
      batchSize: 8,
      epochs: 2,
      fineTuneEpochs: 1,
      workers: 0,
      export: ['onnx'],
    });
    const result = await runTraining(opts, () => {});
    calibration = result.calibration.map((i) => i.file.relPath);
    validation = result.validation.files.map((f) => f.relPath);
    result.model.dispose();
  }, 300_000);
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('train --export writes model.onnx verified on the validation split', async () => {
    const ex = ExportsSchema.parse(JSON.parse(await readFile(path.join(out, 'exports.json'), 'utf8')));
    const manifest = JSON.parse(await readFile(path.join(out, 'manifest.json'), 'utf8'));
    expect(ex.model.version).toBe(manifest.version);
    expect(ex.exports.map((e) => e.format)).toEqual(['onnx']);
    const v = ex.exports[0].verification;
    expect(v.sources[0]).toMatch(/^validation split/);
    expect(v.images).toBe(manifest.dataset.counts.validation);
    expect(v.maxAbsDiff).toBeLessThan(1e-4);
    expect(v.accuracy).toBe(v.referenceAccuracy);
    expect(existsSync(path.join(out, 'model.onnx'))).toBe(true);
    // train --export does not change the manifest's hyperparameters.
    expect(manifest.hyperparameters.export).toBeUndefined();
  });

  it('train --export calibrates int8 on training images, never on the validation split', () => {
    expect(calibration.length).toBe(20 - validation.length);
    expect(calibration.filter((f) => validation.includes(f))).toEqual([]);
  });

  it('edgetune export adds onnx-float16 (verification.json + --data), keeps the onnx record, reproduces its bytes', async () => {
    const before = ExportsSchema.parse(JSON.parse(await readFile(path.join(out, 'exports.json'), 'utf8')));
    const { exports } = await exportModelFormats(out, ['onnx', 'onnx-float16'], { data: root });
    expect(exports.exports.map((e) => e.format)).toEqual(['onnx', 'onnx-float16']);
    expect(exports.exports[0].sha256).toBe(before.exports[0].sha256);
    const f16 = exports.exports[1];
    expect(f16.verification.sources).toEqual(['verification.json', expect.stringContaining('(20 images)')]);
    expect(f16.verification.maxAbsDiff).toBeLessThan(1e-2);
    expect(f16.verification.labelledImages).toBe(20); // accuracy on --data only
    await expect(exportModelFormats(out, ['onnx'], { data: path.join(dir, 'nope') })).rejects.toThrow(/not found/);
  });
});
