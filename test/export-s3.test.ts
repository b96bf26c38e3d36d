import { existsSync } from 'node:fs';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { initBackend } from '../core/backend.js';
import { parseManifest } from '../core/manifest.js';
import { putObject } from '../core/s3/client.js';
import { type EmbeddedS3, startS3rver } from '../core/s3/embedded.js';
import { exportModelFormats } from '../training/export-formats.js';
import { makeModelDir } from './helpers/model-dir.js';

let s3: EmbeddedS3;
let tmp: string;

beforeAll(async () => {
  await initBackend();
  tmp = await mkdtemp(path.join(os.tmpdir(), 'edgetune-export-s3-'));
  s3 = await startS3rver({ port: 0, dir: path.join(tmp, 's3'), buckets: ['edgetune'] });
  process.env.EDGETUNE_S3_ENDPOINT = s3.endpoint;
});

afterAll(async () => {
  await s3?.close();
  delete process.env.EDGETUNE_S3_ENDPOINT;
  await rm(tmp, { recursive: true, force: true });
});

describe('edgetune export of a model version on S3', () => {
  it('reads the version and its verification.json from S3, writes the export into --out (required)', async () => {
    const dir = await makeModelDir(path.join(tmp, 'model'), { inputSize: 32 });
    // A pinned version: the folder name is the manifest's version.
    const manifest = {
      ...parseManifest(JSON.parse(await readFile(path.join(dir, 'manifest.json'), 'utf8'))),
      version: '20261201T120000Z-0123abcd',
    };
    const uri = `s3://edgetune/models/unit/${manifest.version}`;
    for (const f of ['model.json', 'weights.bin', 'verification.json']) await putObject(`${uri}/${f}`, await readFile(path.join(dir, f)));
    await putObject(`${uri}/manifest.json`, JSON.stringify(manifest));
    await expect(exportModelFormats(uri, ['onnx'], {})).rejects.toThrow(/--out/);
    const out = path.join(tmp, 'out');
    const { exports } = await exportModelFormats(uri, ['onnx'], { out });
    expect(exports.model.version).toBe(manifest.version);
    expect(exports.exports[0].verification).toMatchObject({
      images: 6,
      sources: ['verification.json'],
      top1Agreement: 1,
      labelledImages: 6,
    });
    expect(exports.exports[0].verification.maxAbsDiff).toBeLessThan(1e-4);
    expect(existsSync(path.join(out, 'model.onnx'))).toBe(true);
  });
});
