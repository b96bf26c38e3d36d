import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { initBackend } from '../core/backend.js';
import { parseManifest } from '../core/manifest.js';
import { calibrate } from '../training/calibration.js';
import type { ReviewData } from '../training/post-training.js';
import { writeReport } from '../training/report/index.js';
import { makeImage } from './helpers/images.js';
import { makeModelDir } from './helpers/model-dir.js';

let tmp: string;
beforeAll(async () => {
  await initBackend('auto', () => {});
  tmp = await mkdtemp(path.join(os.tmpdir(), 'edgetune-calreport-'));
});
afterAll(async () => {
  if (tmp) await rm(tmp, { recursive: true, force: true });
});

describe('report: reliability diagram and the gallery', () => {
  it('draws the reliability diagram and thumbnails the review photos from their files (escaped names)', async () => {
    const modelDir = path.join(tmp, 'model');
    await makeModelDir(modelDir, { classes: ['a', 'b'], inputSize: 32 });
    const m = parseManifest(JSON.parse(await readFile(path.join(modelDir, 'manifest.json'), 'utf8')));
    m.calibration = calibrate([[3], [-2], [4], [1], [-0.5]], [1, 0, 1, 0, 0], 2, 'validation split (5 images)');
    const data = path.join(tmp, 'data');
    await mkdir(path.join(data, 'a'), { recursive: true });
    await writeFile(path.join(data, 'a', '<x>.png'), await makeImage('png', { width: 50, height: 40 }));
    await writeFile(path.join(data, 'a', 'y.png'), await makeImage('png', { width: 50, height: 40, color: [10, 10, 200] }));
    await writeFile(path.join(data, 'a', 'g.png'), await makeImage('png', { width: 50, height: 40, color: [10, 200, 10] }));
    const photo = (p: string) => ({ path: p, label: 'a', predicted: 'b', probability: 0.8, loss: 1.6, distance: 0.2 });
    const review: ReviewData = {
      classes: ['a', 'b'],
      misclassified: [photo('a/<x>.png'), photo('a/gone.png'), photo('a/g.png')],
      highestLoss: [photo('a/y.png')],
      duplicates: [{ a: 'a/<x>.png', b: 'a/y.png', labelA: 'a', labelB: 'b', similarity: 0.99, kind: 'across-classes' }],
      duplicateSearch: 'cosine similarity >= 0.97',
    };
    const out = path.join(tmp, 'out');
    const r = await writeReport(out, m, { review: { data: review, dataDir: data } });
    expect(r.files).toEqual(expect.arrayContaining(['reliability.svg', 'reliability.png', 'gallery/0.jpg']));
    // The missing file gets no thumbnail, and the same photo is thumbnailed once.
    expect(r.files.filter((f) => f.startsWith('gallery/'))).toHaveLength(3);
    const meta = await sharp(path.join(out, 'report', 'gallery/0.jpg')).metadata();
    expect([meta.width, meta.height, meta.format]).toEqual([96, 96, 'jpeg']);
    const html = await readFile(path.join(out, 'report', 'index.html'), 'utf8');
    expect(html).toContain('Reliability diagram');
    expect(html).toContain('Misclassified validation photos');
    expect(html).toContain('a/&lt;x&gt;.png');
    expect(html).not.toContain('a/<x>.png');
    expect(html).toContain('(no thumbnail)');
    // Each card shows its own photo, though the cards are made concurrently.
    const srcOf = (alt: string) => html.match(new RegExp(`<img src="([^"]+)" alt="${alt}"`))?.[1];
    const [green, blue] = [srcOf('a/g.png'), srcOf('a/y.png')];
    expect(new Set([srcOf('a/&lt;x&gt;.png'), green, blue]).size).toBe(3);
    const mean = async (src: string | undefined) =>
      (await sharp(path.join(out, 'report', src ?? 'none')).stats()).channels.map((c) => c.mean);
    const [gr, gg, gb] = await mean(green);
    expect(gg).toBeGreaterThan(gr + 100);
    expect(gg).toBeGreaterThan(gb + 100);
    const [br, bg, bb] = await mean(blue);
    expect(bb).toBeGreaterThan(br + 100);
    expect(bb).toBeGreaterThan(bg + 100);
    expect(html).toMatch(/temperature<\/dt><dd>\d/);
    const svg = await readFile(path.join(out, 'report', 'reliability.svg'), 'utf8');
    expect(svg).toMatch(/ECE/);
  });
});
