import { mkdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { listAndSplit } from '../training/dataset-listing.js';
import { labelsKey, skipReason, uploadDataset } from '../training/dataset-s3.js';
import type { TrainEvent } from '../training/progress.js';
import { useEmbeddedS3 } from './helpers/embedded-s3.js';
import { makeImage } from './helpers/images.js';

const env = useEmbeddedS3('labels-s3');

beforeAll(async () => {
  process.env.EDGETUNE_S3_BACKOFF_MS = '20';
});

describe('label manifests on S3', () => {
  it('syncs labels.csv next to flat images and lists by it; without --labels the flat keys are refused as before', async () => {
    const src = path.join(env.tmp, 'src');
    await mkdir(src, { recursive: true });
    const rows = ['path,label,split'];
    for (let i = 0; i < 10; i++) {
      await writeFile(path.join(src, `${i}.png`), await makeImage('png', { color: [i * 20, 100, 50] }));
      rows.push(`${i}.png,${i < 5 ? 'cat' : 'dog'},${i === 9 ? 'validation' : ''}`);
    }
    rows.push('gone.png,cat,');
    await writeFile(path.join(src, 'labels.csv'), `${rows.join('\n')}\n`);
    await uploadDataset(src, 's3://edgetune/datasets/flat/');

    const events: TrainEvent[] = [];
    const opts = { data: 's3://edgetune/datasets/flat/', validationSplit: 0.2, seed: 1, stratified: false };
    const cacheDir = path.join(env.tmp, 'cache');
    const r = await listAndSplit({ ...opts, labels: 'labels.csv' }, (e) => events.push(e), { cacheDir });
    expect(r.dir).toBe(path.join(cacheDir, 'edgetune', 'datasets', 'flat'));
    expect(r.listing.classes).toEqual(['cat', 'dog']);
    expect(r.listing.files).toHaveLength(10);
    expect(r.split.validation.map((f) => f.relPath)).toContain('9.png');
    expect(r.skipped).toEqual([{ file: 'gone.png', reason: 'listed in labels.csv (line 12) but not found' }]);
    expect(r.listing.files.every((f) => f.sha256 === undefined)).toBe(true);
    expect(r.labels?.file).toBe('labels.csv');
    // The full URI form names the same key; one outside the dataset is refused.
    const again = await listAndSplit({ ...opts, labels: 's3://edgetune/datasets/flat/labels.csv' }, () => {}, { cacheDir });
    expect(again.split.validation.map((f) => f.relPath)).toEqual(r.split.validation.map((f) => f.relPath));
    await expect(listAndSplit({ ...opts, labels: 's3://edgetune/elsewhere/labels.csv' }, () => {}, { cacheDir })).rejects.toThrow(
      /must sit below the dataset, s3:\/\/edgetune\/datasets\/flat\//,
    );
    await expect(listAndSplit(opts, () => {}, { cacheDir: path.join(env.tmp, 'cache2') })).rejects.toThrow(/not inside a class folder/);
    await expect(listAndSplit({ ...opts, labels: 'nope.csv' }, () => {}, { cacheDir })).rejects.toThrow(
      /labels file not found: s3:\/\/edgetune\/datasets\/flat\/nope\.csv/,
    );
  });

  it('labelsKey refuses keys that escape the prefix', () => {
    expect(labelsKey('s3://edgetune/datasets/x', 'meta/labels.jsonl')).toBe('meta/labels.jsonl');
    expect(() => labelsKey('s3://edgetune/datasets/x/', '../y/labels.csv')).toThrow(/escapes the dataset folder/);
    expect(() => labelsKey('s3://edgetune/datasets/x/', 's3://other-bucket/datasets/x/labels.csv')).toThrow(/must sit below the dataset/);
    expect(skipReason('a.png', 10, { maxObjectBytes: 100 })).toMatch(/not inside a class folder/);
    expect(skipReason('a.png', 10, { maxObjectBytes: 100, anyLayout: true })).toBeUndefined();
    expect(skipReason('a.txt', 10, { maxObjectBytes: 100, anyLayout: true })).toMatch(/not an image type/);
  });
});
