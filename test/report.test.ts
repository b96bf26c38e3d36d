import { mkdtemp, readFile, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import sharp from 'sharp';
import { afterAll, describe, expect, it } from 'vitest';
import { type Manifest, ManifestSchema } from '../core/manifest.js';
import { computeMetrics } from '../training/metrics.js';
import { curveSpec, fineTuneStart, pngTextRenders, writeReport } from '../training/report/index.js';

const dirs: string[] = [];
async function tmp(): Promise<string> {
  const d = await mkdtemp(path.join(tmpdir(), 'edgetune-report-'));
  dirs.push(d);
  return d;
}
afterAll(async () => {
  for (const d of dirs) await rm(d, { recursive: true, force: true });
});

/** A manifest as training writes it, with metrics computed from made-up probabilities. */
function manifest(classes: string[], frozenEpochs: number, fineEpochs: number): Manifest {
  const history: Manifest['history'] = [];
  for (let e = 1; e <= frozenEpochs + fineEpochs; e++) {
    const t = e / (frozenEpochs + fineEpochs);
    history.push({
      phase: e <= frozenEpochs ? 'frozen' : 'fineTune',
      epoch: e,
      loss: 0.7 - 0.5 * t,
      accuracy: 0.55 + 0.4 * t,
      valLoss: 0.65 - 0.45 * t,
      valAccuracy: 0.6 + 0.3 * t,
      seconds: 2.5,
    });
  }
  const n = classes.length;
  // 10 images per class; `wrong` of each class predicted as the next class
  const metricsWith = (wrong: number) => {
    const probs: number[][] = [];
    const labels: number[] = [];
    for (let c = 0; c < n; c++) {
      for (let k = 0; k < 10; k++) {
        const target = k < wrong ? (c + 1) % n : c;
        probs.push(classes.map((_, j) => (j === target ? 0.8 : 0.2 / (n - 1))));
        labels.push(c);
      }
    }
    return computeMetrics(probs, labels, classes);
  };
  return ManifestSchema.parse({
    schemaVersion: 1,
    name: 'shapes',
    version: '20261127T201500Z-3fa2c1d0',
    createdAt: '2026-11-27T20:15:00.000Z',
    classes,
    output: n === 2 ? 'sigmoid' : 'softmax',
    input: { size: 96, channels: 3, resize: 'stretch' },
    preprocessing: { scale: 1 / 127.5, offset: -1, inModel: true },
    backbone: {
      arch: 'mobilenet_v2',
      alpha: 0.35,
      weights: { source: 'nsfwjs', kind: 'nsfwjs', warning: 'fallback <weights>' },
      fineTuneAt: 120,
    },
    hyperparameters: { imageSize: 96, batchSize: 16, epochs: frozenEpochs, fineTuneEpochs: fineEpochs, flip: 'horizontal' },
    dataset: {
      source: '/data/shapes',
      fingerprint: 'abc123',
      counts: { train: 40 * n, validation: 10 * n, perClass: Object.fromEntries(classes.map((c) => [c, 50])) },
      skipped: [{ file: 'circles/<script>alert(1)</script>.jpg', reason: 'cannot decode image: bad & broken' }],
    },
    history,
    metrics: { frozen: metricsWith(3), fineTuned: fineEpochs ? metricsWith(1) : undefined },
    timings: { decodeSeconds: 1.5, frozenSeconds: 12.5, fineTuneSeconds: 80, totalSeconds: 95 },
    backend: 'wasm',
    files: [],
  });
}

async function svgSize(file: string) {
  const meta = await sharp(await readFile(file)).metadata(); // librsvg parses it or throws
  expect(meta.format).toBe('svg');
  return { width: meta.width!, height: meta.height! };
}

describe('writeReport', () => {
  it('writes curves, confusion matrix, augmentation grid and index.html for a two-phase binary run', async () => {
    const out = await tmp();
    const grid = path.join(out, 'augmentation.png');
    await sharp({ create: { width: 300, height: 200, channels: 3, background: '#3366aa' } })
      .png()
      .toFile(grid);
    const m = manifest(['circles', 'squares'], 3, 2);
    const r = await writeReport(out, m, { augmentationGrid: grid });
    const dir = path.join(out, 'report');
    expect(r.dir).toBe(dir);
    expect(r.files.sort()).toEqual(
      ['accuracy.png', 'accuracy.svg', 'augmentation.png', 'confusion.png', 'confusion.svg', 'index.html', 'loss.png', 'loss.svg'].sort(),
    );
    for (const name of ['accuracy', 'loss', 'confusion']) {
      const svgFile = path.join(dir, `${name}.svg`);
      const svg = await readFile(svgFile, 'utf8');
      expect(svg.startsWith('<svg')).toBe(true);
      const { width, height } = await svgSize(svgFile);
      expect(width).toBeGreaterThan(200);
      expect(height).toBeGreaterThan(150);
      const png = await sharp(path.join(dir, `${name}.png`)).metadata();
      expect(png.format).toBe('png');
      expect(png.width).toBe(2 * width);
      expect(png.height).toBe(2 * height);
      expect(png.width!).toBeLessThan(3000);
    }
    const acc = await readFile(path.join(dir, 'accuracy.svg'), 'utf8');
    expect(acc).toContain('Training and validation accuracy');
    expect(acc).toContain('Start fine-tuning');
    expect(acc).toContain('Validation');
    expect(await readFile(path.join(dir, 'loss.svg'), 'utf8')).toContain('Start fine-tuning');
    const conf = await readFile(path.join(dir, 'confusion.svg'), 'utf8');
    expect(conf).toContain('after fine-tuning');
    expect(conf).toContain('9 (90%)'); // fine-tuned metrics: 1 of 10 wrong per class
    expect((await stat(path.join(dir, 'augmentation.png'))).size).toBe((await stat(grid)).size);

    const html = await readFile(path.join(dir, 'index.html'), 'utf8');
    for (const f of ['accuracy.svg', 'loss.svg', 'confusion.svg', 'augmentation.png', 'accuracy.png']) expect(html).toContain(`"${f}"`);
    expect(html).toContain('70.0%'); // frozen val accuracy
    expect(html).toContain('90.0%'); // fine-tuned val accuracy
    expect(html).toContain(m.metrics.fineTuned!.auc!.toFixed(4));
    expect(html).toContain('After fine-tuning');
    // user-controlled strings are escaped
    expect(html).not.toContain('<script>');
    expect(html).toContain('&lt;script&gt;alert(1)&lt;/script&gt;.jpg');
    expect(html).toContain('bad &amp; broken');
    expect(html).toContain('fallback &lt;weights&gt;');
    expect(html).toContain('1 min 35 s');
    expect(html).toContain('nsfwjs');
    expect(r.warnings).toEqual((await pngTextRenders()) ? [] : [expect.stringMatching(/fonts/)]);
  });

  it('frozen-only, three classes: no marker, frozen confusion matrix, no AUC', async () => {
    const out = await tmp();
    const m = manifest(['circles', 'squares', 'triangles'], 4, 0);
    const r = await writeReport(out, m);
    expect(r.files).not.toContain('augmentation.png');
    const dir = path.join(out, 'report');
    expect(await readFile(path.join(dir, 'accuracy.svg'), 'utf8')).not.toContain('Start fine-tuning');
    const conf = await readFile(path.join(dir, 'confusion.svg'), 'utf8');
    expect(conf).toContain('base frozen');
    for (const c of m.classes) expect(conf).toContain(c);
    expect(conf).toContain('7 (70%)');
    const html = await readFile(path.join(dir, 'index.html'), 'utf8');
    expect(html).not.toContain('ROC AUC');
    expect(html).not.toContain('After fine-tuning');
    expect(html).toContain('triangles');
  });

  it('no epochs: no curves, still a confusion matrix and a page that says so', async () => {
    const out = await tmp();
    const m = { ...manifest(['a', 'b'], 0, 0), history: [] };
    const r = await writeReport(out, m);
    expect(r.files.sort()).toEqual(['confusion.png', 'confusion.svg', 'index.html']);
    expect(await readFile(path.join(out, 'report', 'index.html'), 'utf8')).toContain('No epochs were run');
  });

  it('a missing augmentation grid is a clear error', async () => {
    const out = await tmp();
    await expect(writeReport(out, manifest(['a', 'b'], 1, 1), { augmentationGrid: path.join(out, 'nope.png') })).rejects.toThrow(
      /cannot read the augmentation grid/,
    );
    await expect(stat(path.join(out, 'report'))).rejects.toThrow(); // checked before anything is written
  });

  it('PNG figures contain rendered text (fonts available to librsvg)', async () => {
    // Fails on a machine without fonts: install fonts-dejavu-core (see .ci/run).
    expect(await pngTextRenders()).toBe(true);
  });
});

describe('charts', () => {
  it('places the fine-tuning marker half an epoch after the last frozen epoch', () => {
    const m = manifest(['a', 'b'], 5, 3);
    expect(fineTuneStart(m.history)).toBe(5);
    expect(fineTuneStart(m.history.filter((h) => h.phase === 'frozen'))).toBeUndefined();
    const spec = JSON.stringify(curveSpec(m.history, 'loss'));
    expect(spec).toContain('"x":5.5');
    expect(() => curveSpec([], 'accuracy')).toThrow(/no epoch history/);
  });
});
