import { mkdtemp, readFile, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { initBackend } from '../core/backend.js';
import type { Verification } from '../core/manifest.js';
import { sha256 } from '../core/versioning.js';
import { exportModelFormats, splitCalibration } from '../training/export-formats.js';
import { makeModelDir } from './helpers/model-dir.js';

const S = 4;
const per = S * S * 3;
/** n images, image i filled with the byte i; labels alternate a a b b... */
function batch(labels: number[]) {
  const pixels = new Uint8Array(labels.length * per);
  for (let i = 0; i < labels.length; i++) pixels.fill(i, i * per, (i + 1) * per);
  return { pixels, shape: [labels.length, S, S, 3] as [number, number, number, 3], labels, source: '/data (8 images)' };
}
const hashes = (b: { pixels: Uint8Array; shape: number[] }) =>
  Array.from({ length: b.shape[0] }, (_, i) => sha256(b.pixels.subarray(i * per, (i + 1) * per)));

describe('export --data with int8: calibration and verification images are disjoint', () => {
  it('alternates within each class; verification.json images never calibrate', () => {
    const data = batch([0, 0, 0, 0, 1, 1, 1, 1]);
    const { calibration, verify } = splitCalibration(data);
    expect(calibration.labels).toEqual([0, 0, 1, 1]);
    expect(verify.labels).toEqual([0, 0, 1, 1]);
    expect(hashes(calibration).filter((h) => hashes(verify).includes(h))).toEqual([]);
    expect(calibration.source).toBe('/data (4 calibration images)');
    expect(verify.source).toBe('/data (4 held-out images)');

    // Image 0 is also in verification.json: it moves to the verification side.
    const v: Verification = {
      shape: [1, S, S, 3],
      pixels: Buffer.from(data.pixels.subarray(0, per)).toString('base64'),
      labels: [0],
      probabilities: [],
    };
    const s2 = splitCalibration(data, v);
    expect(hashes(s2.calibration)).not.toContain(hashes(data)[0]);
    expect(s2.calibration.shape[0] + s2.verify.shape[0]).toBe(8);
  });

  describe('edgetune export', () => {
    let tmp: string;
    beforeAll(async () => {
      await initBackend();
      tmp = await mkdtemp(path.join(os.tmpdir(), 'edgetune-cal-'));
    });
    afterAll(async () => {
      await rm(tmp, { recursive: true, force: true });
    });

    it('a standalone int8 export without --data is a clear error, and writes nothing', async () => {
      const dir = await makeModelDir(path.join(tmp, 'm'), { inputSize: 32 });
      await expect(exportModelFormats(dir, ['onnx', 'tflite-int8'], {})).rejects.toThrow(
        /tflite-int8 needs calibration images: give --data/,
      );
      await expect(readFile(path.join(dir, 'exports.json'))).rejects.toThrow(/ENOENT/);
    });
  });
});
