import { existsSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { initBackend } from '../core/backend.js';
import { parseManifest } from '../core/manifest.js';
import { putObject } from '../core/s3/client.js';
import { exportModelFormats } from '../training/export-formats.js';
import { useEmbeddedS3 } from './helpers/embedded-s3.js';
import { makeModelDir } from './helpers/model-dir.js';

const env = useEmbeddedS3('export-s3');

beforeAll(async () => {
  await initBackend();
});

describe('edgetune export of a model version on S3', () => {
  it('reads the version and its verification.json from S3, writes the export into --out (required)', async () => {
    const dir = await makeModelDir(path.join(env.tmp, 'model'), { inputSize: 32 });
    // A pinned version: the folder name is the manifest's version.
    const manifest = {
      ...parseManifest(JSON.parse(await readFile(path.join(dir, 'manifest.json'), 'utf8'))),
      version: '20261201T120000Z-0123abcd',
    };
    const uri = `s3://edgetune/models/unit/${manifest.version}`;
    for (const f of ['model.json', 'weights.bin', 'verification.json']) await putObject(`${uri}/${f}`, await readFile(path.join(dir, f)));
    await putObject(`${uri}/manifest.json`, JSON.stringify(manifest));
    await expect(exportModelFormats(uri, ['onnx'], {})).rejects.toThrow(/--out/);
    const out = path.join(env.tmp, 'out');
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
