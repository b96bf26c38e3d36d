// The PyTorch anchor's weight conversion (bench/anchor/): our tfjs ImageNet weights in torchvision's
// MobileNetV2 (Keras' asymmetric stride-2 padding, BatchNorm epsilon 1e-3) compute what our tfjs
// model computes on the same real photos; torchvision's own padding and epsilon do not. And its
// augmentation (grid_sample) gives the pixels of training/augment.ts for the same draws.
import { spawnSync } from 'node:child_process';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { decodePixels, exportSplit, exportWeights, tfjsReference } from '../bench/anchor/export.js';
import { initBackend } from '../core/backend.js';
import { tf } from '../core/tf.js';
import { type AugmentDraw, applyAugmentation } from '../training/augment.js';
import { ALPACA_DIR, hasAlpaca, hasWeights10, hasWeights035, REPO_DIR, skipReason, WEIGHTS_0_35, WEIGHTS_1_0 } from './helpers/shared.js';

const PYTHON = '/usr/bin/python3';
const torchCheck = spawnSync(PYTHON, ['-c', 'import torch, torchvision'], { encoding: 'utf8' });
const hasTorch = torchCheck.status === 0;
const reason = !hasTorch
  ? `skipped: PyTorch not importable by ${PYTHON} (Debian python3-torch and python3-torchvision): ${(torchCheck.stderr || torchCheck.error?.message || '').trim().split('\n').at(-1)}`
  : !hasAlpaca || !hasWeights10 || !hasWeights035
    ? skipReason('the alpaca photos or the ImageNet weights')
    : undefined;
if (reason) console.warn(reason);

/** |a - b| over |b|'s scale: float32 sums in another order differ by ~1e-6 of the magnitude. */
function maxDiff(a: Float32Array, b: Float32Array) {
  let d = 0;
  let scale = 0;
  for (let i = 0; i < b.length; i++) {
    d = Math.max(d, Math.abs(a[i] - b[i]));
    scale = Math.max(scale, Math.abs(b[i]));
  }
  return { d, scale };
}

describe.skipIf(reason !== undefined)('PyTorch anchor: converted weights agree with our tfjs model', () => {
  let tmp: string;
  let photos: string[];
  beforeAll(async () => {
    await initBackend('wasm', () => {});
    tmp = await mkdtemp(path.join(os.tmpdir(), 'edgetune-anchor-'));
    const split = await exportSplit(ALPACA_DIR, { seed: 42, validationSplit: 0.2, stratified: false });
    // Real photos of both classes.
    photos = [
      ...split.validation.filter((f) => f.label === 0).slice(0, 2),
      ...split.validation.filter((f) => f.label === 1).slice(0, 2),
    ].map((f) => f.path);
  });
  afterAll(async () => {
    if (tmp) await rm(tmp, { recursive: true, force: true });
  });

  it.each([
    ['1.0', 224, WEIGHTS_1_0],
    ['0.35', 160, WEIGHTS_0_35],
  ] as const)(
    'alpha %s at %i: pooled features and ImageNet logits within 1e-5 of their scale',
    async (alpha, size, weights) => {
      const prefix = path.join(tmp, `w${alpha}`);
      const index = await exportWeights(weights, prefix);
      expect(index.alpha).toBe(Number(alpha));
      const pixels = await decodePixels(photos, size);
      await writeFile(path.join(tmp, 'px.u8'), pixels);
      const before = tf.memory().numTensors;
      const ref = await tfjsReference(weights, pixels, size);
      expect(tf.memory().numTensors).toBe(before);

      const out = path.join(tmp, 'out.f32');
      const py = spawnSync(
        PYTHON,
        [path.join(REPO_DIR, 'bench/anchor/features.py'), prefix, path.join(tmp, 'px.u8'), String(size), out, '--naive'],
        {
          encoding: 'utf8',
          env: { ...process.env, ANCHOR_THREADS: '1' },
        },
      );
      expect(py.status, py.stderr).toBe(0);
      const info = JSON.parse(py.stdout.trim().split('\n').at(-1) as string);
      expect(info).toMatchObject({ n: photos.length, channels: ref.channels, logits: ref.logits !== undefined });
      const b = await readFile(out);
      const got = new Float32Array(b.buffer, b.byteOffset, b.byteLength / 4);
      const np = photos.length * ref.channels;
      const nl = ref.logits ? photos.length * 1000 : 0;
      expect(got.length).toBe(np + nl + np);

      const pooled = maxDiff(got.subarray(0, np), ref.pooled);
      expect(pooled.scale).toBeGreaterThan(1); // real activations, not zeros
      expect(pooled.d).toBeLessThanOrEqual(1e-5 * pooled.scale);
      if (ref.logits) {
        const logits = maxDiff(got.subarray(np, np + nl), ref.logits);
        expect(logits.d).toBeLessThanOrEqual(1e-5 * logits.scale);
        // Same ImageNet top-1 on every photo.
        for (let i = 0; i < photos.length; i++) {
          const row = (a: Float32Array) => Array.from(a.subarray(i * 1000, i * 1000 + 1000));
          const top1 = (r: number[]) => r.indexOf(Math.max(...r));
          expect(top1(row(got.subarray(np, np + nl)))).toBe(top1(row(ref.logits)));
        }
      }
      // The control: torchvision's symmetric padding and epsilon 1e-5 on the same weights are far off.
      const naive = maxDiff(got.subarray(np + nl), ref.pooled);
      expect(naive.d).toBeGreaterThan(1e-2);
      console.log(
        `anchor alpha ${alpha} ${size}: pooled max |d| ${pooled.d.toExponential(2)} (scale ${pooled.scale.toFixed(2)}); naive conversion ${naive.d.toExponential(2)}`,
      );
    },
    120_000,
  );
});

describe.skipIf(reason !== undefined)('PyTorch anchor: its augmentation is training/augment.ts', () => {
  it('flip, rotation, zoom and contrast give the same pixels on real photos, with reflect fill', async () => {
    const tmp = await mkdtemp(path.join(os.tmpdir(), 'edgetune-anchor-aug-'));
    try {
      const split = await exportSplit(ALPACA_DIR, { seed: 7, validationSplit: 0.2, stratified: false });
      const size = 160;
      const paths = split.train.slice(0, 3).map((f) => f.path);
      const pixels = await decodePixels(paths, size);
      const draws: AugmentDraw[] = [
        { flipH: true, flipV: false, angle: 0.7, zoom: 1, contrast: 1 },
        { flipH: false, flipV: true, angle: -1.1, zoom: 1.15, contrast: 1 },
        { flipH: true, flipV: false, angle: 0.05, zoom: 0.9, contrast: 1.3 },
      ];
      // The control: the same photos with the opposite rotation must not match.
      const control = draws.map((d) => ({ ...d, angle: -d.angle }));
      // One python process: the photos twice, with the draws then the control draws.
      const px = path.join(tmp, 'px.u8');
      await writeFile(px, Buffer.concat([pixels, pixels]));
      await writeFile(path.join(tmp, 'draws.json'), JSON.stringify([...draws, ...control]));
      const out = path.join(tmp, 'out.f32');
      const py = spawnSync(PYTHON, [path.join(REPO_DIR, 'bench/anchor/augment.py'), px, String(size), path.join(tmp, 'draws.json'), out], {
        encoding: 'utf8',
      });
      expect(py.status, py.stderr).toBe(0);
      const b = await readFile(out);
      const all = new Float32Array(b.buffer, b.byteOffset, b.byteLength / 4);
      const got = all.subarray(0, pixels.length);
      const flipped = all.subarray(pixels.length);
      const n = size * size * 3;
      for (const [i, d] of draws.entries()) {
        const img = { data: pixels.subarray(i * n, (i + 1) * n), width: size, height: size };
        const ours = applyAugmentation(img, d);
        const same = maxDiff(got.subarray(i * n, (i + 1) * n), ours);
        const other = maxDiff(flipped.subarray(i * n, (i + 1) * n), ours);
        console.log(
          `anchor augmentation ${JSON.stringify(d)}: max |d| ${same.d.toExponential(2)} (0..255); opposite rotation ${other.d.toFixed(1)}`,
        );
        expect(same.d).toBeLessThanOrEqual(0.05);
        expect(other.d).toBeGreaterThan(20);
      }
    } finally {
      await rm(tmp, { recursive: true, force: true });
    }
  }, 60_000);
});
