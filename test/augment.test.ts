import { readdir, readFile } from 'node:fs/promises';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { decodeImage } from '../core/image.js';
import {
  type AugmentConfig,
  adjustContrast,
  applyAugmentation,
  drawAugmentation,
  IDENTITY_DRAW,
  NO_AUGMENTATION,
  resample,
} from '../training/augment.js';
import { createRng } from '../training/rng.js';
import { epochDraws } from '../training/views.js';
import { wasmAugmentation } from '../training/wasm-kernels/augment-wasm.js';
import { referenceAugmentation } from './helpers/augment-reference.js';
import { ALPACA_DIR, hasAlpaca, skipReason } from './helpers/shared.js';

const img = (w: number, h: number) => {
  const data = new Uint8Array(w * h * 3);
  for (let i = 0; i < data.length; i++) data[i] = (i * 37) % 251;
  return { data, width: w, height: h };
};

describe('augmentation', () => {
  it('the identity draw returns the image unchanged', () => {
    const im = img(9, 9);
    expect(Array.from(applyAugmentation(im, IDENTITY_DRAW))).toEqual(Array.from(im.data));
  });

  it('a horizontal flip mirrors each row', () => {
    const im = img(5, 4);
    const out = applyAugmentation(im, { ...IDENTITY_DRAW, flipH: true });
    for (let c = 0; c < 3; c++) expect(out[(1 * 5 + 0) * 3 + c]).toBe(im.data[(1 * 5 + 4) * 3 + c]);
  });

  it('a quarter turn about the centre moves pixels exactly, and reflect fill keeps values in range', () => {
    const im = img(7, 7);
    const out = applyAugmentation(im, { ...IDENTITY_DRAW, angle: Math.PI / 2 });
    // Centre stays; each output pixel samples a real input pixel (no interpolation at 90 degrees).
    expect(out[(3 * 7 + 3) * 3]).toBeCloseTo(im.data[(3 * 7 + 3) * 3], 3);
    const values = new Set(Array.from(im.data));
    for (let i = 0; i < out.length; i++) expect(values.has(Math.round(out[i]))).toBe(true);
    const rotated = applyAugmentation(img(16, 16), { ...IDENTITY_DRAW, angle: 0.6 });
    expect(Math.min(...rotated)).toBeGreaterThanOrEqual(0);
    expect(Math.max(...rotated)).toBeLessThanOrEqual(255);
  });

  it('draws are deterministic for a seed and stay within the configured factors', () => {
    const cfg = { flip: 'horizontal' as const, rotation: 0.2, zoom: 0.1, contrast: 0.3 };
    const a = Array.from({ length: 200 }, (_, i) => drawAugmentation(cfg, createRng(i)));
    const b = Array.from({ length: 200 }, (_, i) => drawAugmentation(cfg, createRng(i)));
    expect(a).toEqual(b);
    for (const d of a) {
      expect(Math.abs(d.angle)).toBeLessThanOrEqual(0.2 * 2 * Math.PI);
      expect(d.flipV).toBe(false);
      expect(d.zoom).toBeGreaterThanOrEqual(0.9);
      expect(d.contrast).toBeLessThanOrEqual(1.3);
    }
    const flips = a.filter((d) => d.flipH).length;
    expect(flips).toBeGreaterThan(70);
    expect(flips).toBeLessThan(130);
  });

  it('epoch views depend on seed, epoch and file, not on order', () => {
    const cfg = { flip: 'horizontal' as const, rotation: 0.2, zoom: 0, contrast: 0 };
    const e0 = epochDraws(['a.jpg', 'b.jpg'], cfg, 42, 0);
    expect(epochDraws(['b.jpg', 'a.jpg'], cfg, 42, 0)).toEqual([e0[1], e0[0]]);
    expect(epochDraws(['a.jpg', 'b.jpg'], cfg, 42, 1)).not.toEqual(e0);
    expect(epochDraws(['a.jpg'], NO_AUGMENTATION, 42, 0)).toEqual([null]);
  });
});

describe('the augmentation loops in WebAssembly', () => {
  const wasm = wasmAugmentation();
  const same = (a: Float32Array, b: Float32Array) =>
    Buffer.from(a.buffer, a.byteOffset, a.byteLength).equals(Buffer.from(b.buffer, b.byteOffset, b.byteLength));

  it('resample: the bits of the JS loop and of the reference, for rotations, zooms out past a width and flips', () => {
    expect(wasm).toBeDefined();
    const rng = createRng(11);
    let compared = 0;
    // Odd sizes and non-square images; zoom 0.3 samples up to ~2 widths out (the general fold), 1.6 stays inside.
    for (const [w, h] of [
      [224, 224],
      [37, 53],
      [5, 3],
    ]) {
      const im = img(w, h);
      for (let k = 0; k < 40; k++) {
        const draw = {
          flipH: k % 2 === 0,
          flipV: k % 3 === 0,
          angle: (rng() - 0.5) * 2 * Math.PI,
          zoom: [1, 0.3, 1.6, 0.9][k % 4],
          contrast: 1,
        };
        const ref = referenceAugmentation(im, draw);
        const js = new Float32Array(w * h * 3);
        const got = new Float32Array(w * h * 3).fill(Number.NaN);
        resample(im.data, w, h, draw, js);
        wasm?.resample(im.data, w, h, draw, got);
        expect(same(js, ref)).toBe(true);
        expect(same(got, ref)).toBe(true);
        compared++;
      }
    }
    expect(compared).toBe(120);
  });

  it('contrast: the bits of the JS pass, clamped at both ends, on a view inside a larger buffer', () => {
    const rng = createRng(5);
    for (const n of [224 * 224, 37 * 53, 1]) {
      const batch = new Float32Array(3 * n * 3);
      for (let i = 0; i < batch.length; i++) batch[i] = Math.fround(rng() * 255);
      for (const factor of [0.6, 1.4, 3, 0]) {
        const js = batch.slice(n * 3, 2 * n * 3);
        const before = batch.slice();
        const got = batch.subarray(n * 3, 2 * n * 3);
        adjustContrast(js, factor);
        wasm?.contrast(got, factor);
        expect(same(got, js)).toBe(true);
        // Only the view changed.
        expect(same(batch.subarray(0, n * 3), before.subarray(0, n * 3))).toBe(true);
        expect(same(batch.subarray(2 * n * 3), before.subarray(2 * n * 3))).toBe(true);
        if (factor === 3 && n > 1) expect(Math.min(...js.subarray(0, 3000)) === 0 && Math.max(...js.subarray(0, 3000)) === 255).toBe(true);
        batch.set(before);
      }
    }
  });
});

if (!hasAlpaca) console.warn(skipReason('the alpaca photos'));
describe.skipIf(!hasAlpaca)('augmentation pixels on real photos', () => {
  it('are bit for bit those of the plain per-pixel loop (test/helpers/augment-reference.ts), alone or written into a batch', async () => {
    const files: string[] = [];
    for (const cls of ['alpaca', 'not_alpaca']) {
      const names = (await readdir(path.join(ALPACA_DIR, cls))).sort().slice(0, 6);
      files.push(...names.map((f) => path.join(ALPACA_DIR, cls, f)));
    }
    const configs: AugmentConfig[] = [
      { flip: 'horizontal', rotation: 0.04, zoom: 0, contrast: 0 }, // the default recipe
      { flip: 'horizontal', rotation: 0.2, zoom: 0, contrast: 0 }, // --recipe keras
      { flip: 'horizontal_and_vertical', rotation: 0.5, zoom: 0.3, contrast: 0.4 },
      { flip: 'vertical', rotation: 0, zoom: 0, contrast: 0.2 },
    ];
    const rng = createRng(3);
    let compared = 0;
    for (const [i, file] of files.entries()) {
      const size = i % 2 ? 160 : 224;
      const im = await decodeImage(await readFile(file), { size });
      const batch = new Float32Array(3 * size * size * 3);
      for (const cfg of configs) {
        for (let k = 0; k < 3; k++) {
          const draw = drawAugmentation(cfg, rng);
          const ref = referenceAugmentation(im, draw);
          const got = applyAugmentation(im, draw);
          expect(Buffer.from(got.buffer).equals(Buffer.from(ref.buffer))).toBe(true);
          applyAugmentation(im, draw, batch, k * size * size * 3);
          const slot = batch.subarray(k * size * size * 3, (k + 1) * size * size * 3);
          expect(Buffer.from(slot.buffer, slot.byteOffset, slot.byteLength).equals(Buffer.from(ref.buffer))).toBe(true);
          compared++;
        }
      }
    }
    expect(compared).toBe(files.length * configs.length * 3);
  }, 60_000);

  it('refuses an output buffer too small for the view', () => {
    const im = img(8, 8);
    expect(() => applyAugmentation(im, IDENTITY_DRAW, new Float32Array(8 * 8 * 3), 3)).toThrow(/holds 192 values, need 195/);
  });
});
