import { mkdir, mkdtemp, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import sharp from 'sharp';
import { describe, expect, it } from 'vitest';
import { decodeImage } from '../core/image.js';
import { DatasetError, datasetFingerprint, decodeFiles, epochOrder, listDataset, splitDataset } from '../training/dataset.js';
import { makeDataset, makeImage } from './helpers/images.js';

const tmp = () => mkdtemp(path.join(os.tmpdir(), 'edgetune-ds-'));

describe('listDataset', () => {
  it('takes sorted subfolder names as classes and ignores non-image files', async () => {
    const root = await makeDataset(await tmp(), { zebra: 3, ant: 2, moose: 2 });
    await writeFile(path.join(root, 'ant', '.DS_Store'), 'x');
    await writeFile(path.join(root, 'ant', 'README.md'), '# hi');
    await writeFile(path.join(root, 'notes.txt'), 'top-level file');
    await mkdir(path.join(root, 'zebra', 'nested'));
    await writeFile(path.join(root, 'zebra', 'nested', 'deep.PNG'), await makeImage('png'));
    const l = await listDataset(root);
    expect(l.classes).toEqual(['ant', 'moose', 'zebra']);
    expect(l.files).toHaveLength(8);
    expect(l.files.filter((f) => f.label === 2).map((f) => f.relPath)).toContain('zebra/nested/deep.PNG');
    expect(l.files.every((f) => !f.relPath.endsWith('.md'))).toBe(true);
  });

  it('names the problem: missing folder, one class, empty class', async () => {
    await expect(listDataset('/no/such/dir')).rejects.toThrow(/dataset folder not found: \/no\/such\/dir/);
    const one = await makeDataset(await tmp(), { only: 3 });
    await expect(listDataset(one)).rejects.toThrow(/at least 2 class subfolders.*found 1 \(only\)/);
    const empty = await makeDataset(await tmp(), { a: 2, b: 2 });
    await mkdir(path.join(empty, 'c'));
    await writeFile(path.join(empty, 'c', 'notes.txt'), 'no images');
    await expect(listDataset(empty)).rejects.toThrow(/class folder\(s\) with no images: c/);
  });
});

describe('splitDataset', () => {
  it('is reproducible for a seed, never overlaps, and changes with the seed', async () => {
    const l = await listDataset(await makeDataset(await tmp(), { a: 30, b: 20 }));
    const s1 = splitDataset(l, { validationSplit: 0.2, seed: 42 });
    const s2 = splitDataset(l, { validationSplit: 0.2, seed: 42 });
    const s3 = splitDataset(l, { validationSplit: 0.2, seed: 7 });
    expect(s1.validation.map((f) => f.relPath)).toEqual(s2.validation.map((f) => f.relPath));
    expect(s1.validation).toHaveLength(10);
    expect(s1.train).toHaveLength(40);
    const val = new Set(s1.validation.map((f) => f.relPath));
    expect(s1.train.some((f) => val.has(f.relPath))).toBe(false);
    expect(s3.validation.map((f) => f.relPath)).not.toEqual(s1.validation.map((f) => f.relPath));
  });

  it('stratified keeps class proportions', async () => {
    const l = await listDataset(await makeDataset(await tmp(), { a: 40, b: 10 }));
    const s = splitDataset(l, { validationSplit: 0.2, seed: 1, stratified: true });
    expect(s.validation.filter((f) => f.label === 0)).toHaveLength(8);
    expect(s.validation.filter((f) => f.label === 1)).toHaveLength(2);
  });

  it('refuses a split that leaves a side empty', async () => {
    const l = await listDataset(await makeDataset(await tmp(), { a: 1, b: 1 }));
    expect(() => splitDataset(l, { validationSplit: 0.2, seed: 1 })).toThrow(DatasetError);
    expect(() => splitDataset(l, { validationSplit: 0.2, seed: 1 })).toThrow(/too few images \(2\)/);
  });

  it('epochOrder is a seeded permutation that differs between epochs', () => {
    const a = epochOrder(50, 42, 0);
    expect([...a].sort((x, y) => x - y)).toEqual(Array.from({ length: 50 }, (_, i) => i));
    expect(epochOrder(50, 42, 0)).toEqual(a);
    expect(epochOrder(50, 42, 1)).not.toEqual(a);
  });
});

describe('decoding', () => {
  it('skips and reports corrupt files instead of crashing', async () => {
    const root = await makeDataset(await tmp(), { a: 3, b: 3 });
    await writeFile(path.join(root, 'a', 'broken.jpg'), Buffer.from([0xff, 0xd8, 0xff, 0xe0, 1, 2, 3]));
    const png = await makeImage('png');
    await writeFile(path.join(root, 'b', 'truncated.png'), png.subarray(0, png.length >> 1));
    const l = await listDataset(root);
    const r = await decodeFiles(l.files, { size: 16 });
    expect(r.images).toHaveLength(6);
    expect(r.skipped.map((s) => s.file)).toEqual(['a/broken.jpg', 'b/truncated.png']);
    expect(r.skipped[0].reason).toMatch(/cannot decode image/);
    expect(datasetFingerprint(l.classes, r.hashes)).toMatch(/^[0-9a-f]{64}$/);
  });

  it('decodes every format to size x size RGB: JPEG (progressive), PNG with alpha, WebP, GIF, BMP, greyscale', async () => {
    const bmp = (await import('bmp-js')).default;
    const abgr = Buffer.alloc(8 * 6 * 4);
    for (let i = 0; i < abgr.length; i += 4) abgr.set([0, 10, 20, 250], i); // A B G R: red
    const inputs: Record<string, Buffer> = {
      jpeg: await makeImage('jpeg'),
      progressive: await sharp(await makeImage('png'))
        .jpeg({ progressive: true })
        .toBuffer(),
      pngAlpha: await makeImage('png', { channels: 4 }),
      grey: await makeImage('png', { channels: 1, color: [128, 128, 128] }),
      webp: await makeImage('webp'),
      gif: await makeImage('gif'),
      bmp: bmp.encode({ data: abgr, width: 8, height: 6 }).data,
    };
    for (const [name, bytes] of Object.entries(inputs)) {
      const img = await decodeImage(bytes, { size: 20 });
      expect(img.data.length, name).toBe(20 * 20 * 3);
    }
    const red = await decodeImage(inputs.bmp, { size: 4 });
    expect(Array.from(red.data.subarray(0, 3))).toEqual([250, 20, 10]);
    const grey = await decodeImage(inputs.grey, { size: 4 });
    expect(grey.data[0]).toBe(grey.data[1]);
    expect(grey.data[1]).toBe(grey.data[2]);
  });

  it('applies EXIF orientation', async () => {
    // 40x20 image, left half black, right half white, tagged "rotate 90 CW" (orientation 6).
    const w = 40;
    const h = 20;
    const px = Buffer.alloc(w * h * 3);
    for (let y = 0; y < h; y++) for (let x = w / 2; x < w; x++) px.fill(255, (y * w + x) * 3, (y * w + x) * 3 + 3);
    const jpg = await sharp(px, { raw: { width: w, height: h, channels: 3 } })
      .withMetadata({ orientation: 6 })
      .jpeg()
      .toBuffer();
    const img = await decodeImage(jpg, { size: 20 });
    // After rotating 90 degrees clockwise the white half is at the bottom.
    expect(img.data[0]).toBeLessThan(60);
    expect(img.data[(19 * 20 + 10) * 3]).toBeGreaterThan(200);
  });

  it('refuses images over the pixel limit', async () => {
    await expect(decodeImage(await makeImage('png', { width: 100, height: 100 }), { size: 10, limitInputPixels: 5000 })).rejects.toThrow(
      /cannot decode/,
    );
  });
});
