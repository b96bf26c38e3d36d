import { createHash } from 'node:crypto';
import { mkdir, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { decodeImage } from '../core/image.js';
import { listDataset } from '../training/dataset.js';
import { DEMO_CLASSES, demoImages, generateDemoDataset, renderDemoImage } from '../training/demo-data.js';

const dirs: string[] = [];
async function tmp(): Promise<string> {
  const d = await mkdtemp(path.join(tmpdir(), 'edgetune-demo-'));
  dirs.push(d);
  return d;
}
afterAll(async () => {
  for (const d of dirs) await rm(d, { recursive: true, force: true });
});

async function hashes(root: string): Promise<Map<string, string>> {
  const out = new Map<string, string>();
  for (const cls of (await readdir(root)).sort()) {
    for (const f of (await readdir(path.join(root, cls))).sort()) {
      out.set(
        `${cls}/${f}`,
        createHash('sha256')
          .update(await readFile(path.join(root, cls, f)))
          .digest('hex'),
      );
    }
  }
  return out;
}

describe('generateDemoDataset', () => {
  it('writes perClass JPEGs per class in the layout listDataset reads, decodable by decodeImage', async () => {
    const root = path.join(await tmp(), 'shapes');
    const r = await generateDemoDataset(root, { classes: 3, perClass: 5, size: 48, seed: 1 });
    expect(r.classes).toEqual(['circles', 'squares', 'triangles']);
    expect(r.counts).toEqual({ circles: 5, squares: 5, triangles: 5 });
    expect(r.files).toHaveLength(15);
    const listing = await listDataset(root);
    expect(listing.classes).toEqual(['circles', 'squares', 'triangles']);
    expect(listing.files).toHaveLength(15);
    expect(listing.files.filter((f) => f.label === 2).map((f) => f.relPath)).toEqual(
      ['01', '02', '03', '04', '05'].map((k) => `triangles/triangles_00${k}.jpg`),
    );
    for (const f of listing.files) {
      const bytes = await readFile(f.absPath);
      expect([bytes[0], bytes[1]]).toEqual([0xff, 0xd8]); // JPEG SOI
      const img = await decodeImage(bytes, { size: 32 });
      expect(img.data.length).toBe(32 * 32 * 3);
    }
  });

  it('is deterministic for a seed (same bytes) and different for another seed', async () => {
    const opts = { classes: 2, perClass: 4, size: 64, seed: 7 };
    const a = await hashes((await generateDemoDataset(path.join(await tmp(), 'a'), opts)).root);
    const b = await hashes((await generateDemoDataset(path.join(await tmp(), 'b'), opts)).root);
    expect([...a.keys()]).toHaveLength(8);
    expect(b).toEqual(a);
    const c = await hashes((await generateDemoDataset(path.join(await tmp(), 'c'), { ...opts, seed: 8 })).root);
    expect([...c.keys()]).toEqual([...a.keys()]);
    for (const k of a.keys()) expect(c.get(k)).not.toBe(a.get(k));
    // image k does not depend on how many images per class were asked for
    const d = await hashes((await generateDemoDataset(path.join(await tmp(), 'd'), { ...opts, perClass: 2 })).root);
    for (const [k, h] of d) expect(a.get(k)).toBe(h);
  });

  it('images are varied: no two identical, colours differ across images', async () => {
    const seen = new Set<string>();
    const means: number[] = [];
    for (let k = 0; k < 20; k++) {
      const img = renderDemoImage(DEMO_CLASSES[k % 2], 32, 1000 + k);
      seen.add(createHash('sha1').update(img.data).digest('hex'));
      means.push(img.data.reduce((s, v) => s + v, 0) / img.data.length);
    }
    expect(seen.size).toBe(20);
    expect(Math.max(...means) - Math.min(...means)).toBeGreaterThan(30);
  });

  it('the shape, not the background, differs between classes: same seed gives the same background', () => {
    // same per-image seed, different class: the backgrounds match, the shape pixels differ
    const a = renderDemoImage('circles', 64, 99);
    const b = renderDemoImage('squares', 64, 99);
    let differing = 0;
    for (let i = 0; i < a.data.length; i += 3) if (Math.abs(a.data[i] - b.data[i]) > 20) differing++;
    expect(differing).toBeGreaterThan(20);
    expect(differing).toBeLessThan(64 * 64 * 0.5);
  });

  it('refuses a non-empty folder unless force, which replaces only its own files', async () => {
    const root = await tmp();
    await writeFile(path.join(root, 'notes.txt'), 'keep me');
    await expect(generateDemoDataset(root, { perClass: 2, size: 32 })).rejects.toThrow(/not empty/);
    await mkdir(path.join(root, 'circles'));
    await writeFile(path.join(root, 'circles', 'circles_0099.jpg'), 'stale');
    await writeFile(path.join(root, 'circles', 'mine.jpg'), 'user file');
    await generateDemoDataset(root, { perClass: 2, size: 32, force: true });
    expect((await readdir(path.join(root, 'circles'))).sort()).toEqual(['circles_0001.jpg', 'circles_0002.jpg', 'mine.jpg']);
    expect(await readFile(path.join(root, 'notes.txt'), 'utf8')).toBe('keep me');
    // fewer classes than last time: the generator's old class folder goes, leaving a valid dataset
    await generateDemoDataset(root, { classes: 3, perClass: 1, size: 32, force: true });
    await generateDemoDataset(root, { classes: 2, perClass: 1, size: 32, force: true });
    expect((await readdir(root)).sort()).toEqual(['circles', 'notes.txt', 'squares']);
  });

  it('rejects bad options with a clear error', async () => {
    const root = await tmp();
    await expect(generateDemoDataset(path.join(root, 'x'), { classes: 1 })).rejects.toThrow(/classes must be an integer in \[2, 6\]/);
    await expect(generateDemoDataset(path.join(root, 'x'), { classes: 7 })).rejects.toThrow(/classes/);
    await expect(generateDemoDataset(path.join(root, 'x'), { size: 8 })).rejects.toThrow(/size/);
    await expect(generateDemoDataset(path.join(root, 'x'), { perClass: 0 })).rejects.toThrow(/perClass/);
    await expect(generateDemoDataset(path.join(root, 'x'), { seed: 1.5 })).rejects.toThrow(/seed/);
  });

  it('is fast: the default 2 x 60 at 192 px well within a few seconds', async () => {
    const t0 = performance.now();
    let n = 0;
    for await (const img of demoImages({})) {
      expect(img.bytes.length).toBeGreaterThan(1000);
      n++;
    }
    const seconds = (performance.now() - t0) / 1000;
    expect(n).toBe(120);
    console.log(`demo-data: 120 images at 192 px in ${seconds.toFixed(2)} s`);
    expect(seconds).toBeLessThan(15); // ~1.5 s on an idle 2-core machine; generous for a shared CI box
  });
});
