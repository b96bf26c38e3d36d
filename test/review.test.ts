import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { initBackend } from '../core/backend.js';
import { HEAD } from '../core/classifier.js';
import { createFastForward } from '../core/fast-forward.js';
import { decodeImage } from '../core/image.js';
import { loadModel } from '../core/model-loader.js';
import { encodeFloat32 } from '../core/open-set-score.js';
import { tf } from '../core/tf.js';
import { reviewCsv, reviewFolder } from '../training/review.js';
import { makeImage } from './helpers/images.js';
import { makeModelDir } from './helpers/model-dir.js';

// A folder with the model's two classes, a third folder the model does not know, an exact twin
// filed under both classes, and a file that does not decode.
let tmp: string;
let modelDir: string;
let data: string;
const red: [number, number, number] = [220, 40, 40];

beforeAll(async () => {
  await initBackend('auto', () => {});
  tmp = await mkdtemp(path.join(os.tmpdir(), 'edgetune-review-'));
  modelDir = path.join(tmp, 'model');
  await makeModelDir(modelDir, { classes: ['green', 'red'], inputSize: 32 });
  data = path.join(tmp, 'data');
  for (const c of ['red', 'green', 'blue']) await mkdir(path.join(data, c), { recursive: true });
  for (let i = 0; i < 3; i++) {
    await writeFile(path.join(data, 'red', `r${i}.png`), await makeImage('png', { width: 40 + i, height: 40, color: red }));
    await writeFile(path.join(data, 'green', `g${i}.png`), await makeImage('png', { width: 40 + i, height: 40, color: [30, 210, 50] }));
    await writeFile(path.join(data, 'blue', `b${i}.png`), await makeImage('png', { width: 40 + i, height: 40, color: [20, 30, 235] }));
  }
  const twin = await makeImage('png', { width: 44, height: 44, color: [120, 120, 120] });
  await writeFile(path.join(data, 'red', 'twin.png'), twin);
  await writeFile(path.join(data, 'green', 'twin, copy.png'), twin);
  await writeFile(path.join(data, 'red', 'broken.jpg'), Buffer.from('not a jpeg'));

  // Class means at the red photos' embedding, threshold tight: red accepted, blue not.
  const { model, manifest } = await loadModel(modelDir);
  const img = await decodeImage(await makeImage('png', { width: 40, height: 40, color: red }), { size: 32, resize: manifest.input.resize });
  const ff = createFastForward(model);
  const pool = tf.tidy(() => ff.forward(tf.tensor4d(Float32Array.from(img.data), [1, 32, 32, 3]), { to: HEAD.pool }));
  const v = Float32Array.from(await pool.data());
  tf.dispose(pool);
  ff.dispose();
  model.dispose();
  const n = Math.hypot(...v);
  const means = new Float32Array(2 * v.length);
  means.set(v.map((x) => x / n));
  means.set(
    v.map((x) => x / n),
    v.length,
  );
  const file = path.join(modelDir, 'manifest.json');
  const m = JSON.parse(await readFile(file, 'utf8'));
  m.openSet = {
    metric: 'cosine-nearest-class-mean',
    layer: HEAD.pool,
    dim: v.length,
    means: encodeFloat32(means),
    meansFrom: 'test',
    target: 0.95,
    threshold: 1e-3,
    interval: [1e-3, 1e-3],
    bootstrap: 1,
    n: 1,
    accepted: 1,
    fittedOn: 'test',
  };
  await writeFile(file, JSON.stringify(m));
}, 120_000);

afterAll(async () => {
  if (tmp) await rm(tmp, { recursive: true, force: true });
});

function parseCsv(text: string): string[][] {
  const rows: string[][] = [];
  for (const line of text.trim().split('\n')) {
    const cells: string[] = [];
    let cur = '';
    let q = false;
    for (let i = 0; i < line.length; i++) {
      const ch = line[i];
      if (q && ch === '"' && line[i + 1] === '"') {
        cur += '"';
        i++;
      } else if (ch === '"') q = !q;
      else if (ch === ',' && !q) {
        cells.push(cur);
        cur = '';
      } else cur += ch;
    }
    cells.push(cur);
    rows.push(cells);
  }
  return rows;
}

describe('edgetune review', () => {
  it('lists every photo once, flags the unknown folder and the broken file, and counts the rates', async () => {
    const { model, manifest } = await loadModel(modelDir);
    const { rows, summary } = await reviewFolder(model, manifest, data, { batch: 4 });
    model.dispose();
    expect(rows).toHaveLength(12);
    expect(new Set(rows.map((r) => r.path)).size).toBe(12);
    expect(rows.find((r) => r.path === 'red/broken.jpg')?.reason).toBe('undecodable');
    for (const r of rows.filter((r) => r.label === 'blue')) expect(r.reason).toBe('unknown');
    const r0 = rows.find((r) => r.path === 'red/r0.png');
    expect(r0?.reason).not.toBe('unknown');
    expect(r0?.distance).toBeLessThan(1e-3);
    expect(summary).toMatchObject({ images: 12, undecodable: 1, outside: 3, outsideFlagged: 3, inClass: 8, threshold: 1e-3 });
    expect(summary.inClassRejected).toBe(rows.filter((r) => r.reason === 'unknown' && r.label !== 'blue').length);
    // Flagged rows come first.
    const firstOk = rows.findIndex((r) => r.reason === '');
    if (firstOk >= 0) expect(rows.slice(firstOk).every((r) => r.reason === '')).toBe(true);
  });

  it('writes a label CSV (path,label first) that parses back, quoting a comma in a file name', async () => {
    const { model, manifest } = await loadModel(modelDir);
    const { rows } = await reviewFolder(model, manifest, data, { threshold: 2 });
    model.dispose();
    const table = parseCsv(reviewCsv(rows));
    expect(table[0]).toEqual(['path', 'label', 'predicted', 'probability', 'distance', 'reason', 'other']);
    expect(table).toHaveLength(13);
    const byPath = new Map(table.slice(1).map((r) => [r[0], r]));
    expect(byPath.get('green/twin, copy.png')?.[1]).toBe('green');
    expect(byPath.get('red/r0.png')?.[1]).toBe('red');
    // The twin filed under both classes: one is misclassified, the other is a near-duplicate of it.
    const twins = rows.filter((r) => r.path.includes('twin'));
    expect(twins.map((r) => r.reason).sort()).toEqual(['misclassified', 'near-duplicate']);
    expect(twins.find((r) => r.reason === 'near-duplicate')?.other).toMatch(/twin/);
    // With threshold 2 nothing is unknown.
    expect(rows.some((r) => r.reason === 'unknown')).toBe(false);
  });
});
