import type { RgbImage } from '../core/image.js';
import { wasmAugmentation } from './wasm-kernels/augment-wasm.js';

export type FlipMode = 'horizontal' | 'vertical' | 'horizontal_and_vertical' | 'none';

export interface AugmentConfig {
  flip: FlipMode;
  /** Fraction of a full turn, like Keras' RandomRotation(factor): angles in +-factor * 2 pi. */
  rotation: number;
  /** Like RandomZoom: scale drawn in [1 - zoom, 1 + zoom] (> 1 zooms out). */
  zoom: number;
  /** Like RandomContrast: factor drawn in [1 - contrast, 1 + contrast] around each channel's mean. */
  contrast: number;
}

export interface AugmentDraw {
  flipH: boolean;
  flipV: boolean;
  angle: number;
  zoom: number;
  contrast: number;
}

export const NO_AUGMENTATION: AugmentConfig = { flip: 'none', rotation: 0, zoom: 0, contrast: 0 };
export const IDENTITY_DRAW: AugmentDraw = { flipH: false, flipV: false, angle: 0, zoom: 1, contrast: 1 };

export function isIdentity(cfg: AugmentConfig): boolean {
  return cfg.flip === 'none' && cfg.rotation === 0 && cfg.zoom === 0 && cfg.contrast === 0;
}

export function drawAugmentation(cfg: AugmentConfig, rng: () => number): AugmentDraw {
  const sym = (f: number) => (rng() * 2 - 1) * f;
  // Draw every value in a fixed order whatever the config, so one image's draw never shifts another's.
  const h = rng() < 0.5;
  const v = rng() < 0.5;
  const angle = sym(cfg.rotation) * 2 * Math.PI;
  const zoom = 1 + sym(cfg.zoom);
  const contrast = 1 + sym(cfg.contrast);
  return {
    flipH: h && (cfg.flip === 'horizontal' || cfg.flip === 'horizontal_and_vertical'),
    flipV: v && (cfg.flip === 'vertical' || cfg.flip === 'horizontal_and_vertical'),
    angle,
    zoom,
    contrast,
  };
}

/** Keras' 'reflect' fill (d c b a | a b c d | d c b a) on integer pixel indices. */
function reflect(i: number, n: number): number {
  const period = 2 * n;
  let k = i % period;
  if (k < 0) k += period;
  return k < n ? k : period - k - 1;
}

/**
 * Flip, then rotate/zoom about the centre with bilinear sampling and reflect fill (as Keras'
 * RandomFlip + RandomRotation + RandomZoom), then contrast. Runs in the worker threads.
 * Returns HWC RGB floats in 0..255, same size as the input, written into `out` at `offset` when
 * given (a batch buffer: no copy per view).
 *
 * The pixels are the training data: every value is computed with the same float64 operations in
 * the same order as the plain per-pixel loop (test/helpers/augment-reference.ts, compared bit for
 * bit on real photos in test/augment.test.ts). What is hoisted out of the loop are products that do
 * not change along a row or a column; sums keep their order.
 */
export function applyAugmentation(img: RgbImage, draw: AugmentDraw, out?: Float32Array, offset = 0): Float32Array {
  const { width: w, height: h, data } = img;
  const dst = out ?? new Float32Array(w * h * 3);
  if (dst.length < offset + w * h * 3)
    throw new Error(`applyAugmentation: the output holds ${dst.length} values, need ${offset + w * h * 3}`);
  const view = offset === 0 && dst.length === w * h * 3 ? dst : dst.subarray(offset, offset + w * h * 3);
  const wasm = wasmAugmentation();
  if (draw.angle !== 0 || draw.zoom !== 1) (wasm?.resample ?? resample)(data, w, h, draw, view);
  else remap(data, w, h, draw.flipH, draw.flipV, view);
  if (draw.contrast !== 1) (wasm?.contrast ?? adjustContrast)(view, draw.contrast);
  return out ? dst : view;
}

/** Flips only: every output pixel is one input pixel (integer source positions, no interpolation). */
function remap(data: Uint8Array, w: number, h: number, flipH: boolean, flipV: boolean, out: Float32Array): void {
  for (let y = 0; y < h; y++) {
    const row = (flipV ? h - 1 - y : y) * w;
    let o = y * w * 3;
    if (!flipH) {
      const i = row * 3;
      for (let k = 0; k < w * 3; k++) out[o + k] = data[i + k];
      continue;
    }
    for (let x = w - 1; x >= 0; x--, o += 3) {
      const i = (row + x) * 3;
      out[o] = data[i];
      out[o + 1] = data[i + 1];
      out[o + 2] = data[i + 2];
    }
  }
}

/**
 * Rotation/zoom (and flips) with bilinear sampling and reflect fill. wasm-kernels/augment-wasm.ts
 * runs this loop op for op in WebAssembly (~1.6x faster); this one is used where that cannot be built.
 */
export function resample(data: Uint8Array, w: number, h: number, draw: AugmentDraw, out: Float32Array): void {
  const cx = (w - 1) / 2;
  const cy = (h - 1) / 2;
  const cos = Math.cos(draw.angle) * draw.zoom;
  const sin = Math.sin(draw.angle) * draw.zoom;
  const nsin = -sin;
  // Inverse map: output pixel -> source position in the (flipped) input, as
  // sx = cos*dx + sin*dy + cx, sy = -sin*dx + cos*dy + cy (left to right).
  const cosDx = new Float64Array(w);
  const nsinDx = new Float64Array(w);
  for (let x = 0; x < w; x++) {
    const dx = x - cx;
    cosDx[x] = cos * dx;
    nsinDx[x] = nsin * dx;
  }
  const { flipH, flipV } = draw;
  for (let y = 0; y < h; y++) {
    const dy = y - cy;
    const sinDy = sin * dy;
    const cosDy = cos * dy;
    let o = y * w * 3;
    for (let x = 0; x < w; x++, o += 3) {
      let sx = cosDx[x] + sinDy + cx;
      let sy = nsinDx[x] + cosDy + cy;
      if (flipH) sx = w - 1 - sx;
      if (flipV) sy = h - 1 - sy;
      const x0f = Math.floor(sx);
      const y0f = Math.floor(sy);
      const fx = sx - x0f;
      const fy = sy - y0f;
      let x0 = x0f;
      let x1 = x0f + 1;
      let y0 = y0f;
      let y1 = y0f + 1;
      if (fx === 0 && fy === 0 && x0 >= 0 && x0 < w && y0 >= 0 && y0 < h) {
        const i = (y0 * w + x0) * 3;
        out[o] = data[i];
        out[o + 1] = data[i + 1];
        out[o + 2] = data[i + 2];
        continue;
      }
      // Most samples fall inside the image; only the border pays for the reflect fill.
      if (x0 < 0 || x1 >= w) {
        x0 = reflect(x0, w);
        x1 = reflect(x1, w);
      }
      if (y0 < 0 || y1 >= h) {
        y0 = reflect(y0, h);
        y1 = reflect(y1, h);
      }
      const a = (y0 * w + x0) * 3;
      const b = (y0 * w + x1) * 3;
      const c = (y1 * w + x0) * 3;
      const d = (y1 * w + x1) * 3;
      const gx = 1 - fx;
      const gy = 1 - fy;
      const wa = gx * gy;
      const wb = fx * gy;
      const wc = gx * fy;
      const wd = fx * fy;
      out[o] = data[a] * wa + data[b] * wb + data[c] * wc + data[d] * wd;
      out[o + 1] = data[a + 1] * wa + data[b + 1] * wb + data[c + 1] * wc + data[d + 1] * wd;
      out[o + 2] = data[a + 2] * wa + data[b + 2] * wb + data[c + 2] * wc + data[d + 2] * wd;
    }
  }
}

/** The contrast pass (its WebAssembly twin: wasm-kernels/augment-wasm.ts). */
export function adjustContrast(px: Float32Array, factor: number): void {
  const mean = [0, 0, 0];
  const n = px.length / 3;
  for (let i = 0; i < px.length; i += 3) {
    mean[0] += px[i];
    mean[1] += px[i + 1];
    mean[2] += px[i + 2];
  }
  for (let ch = 0; ch < 3; ch++) mean[ch] /= n;
  for (let i = 0; i < px.length; i++) {
    const m = mean[i % 3];
    px[i] = Math.min(255, Math.max(0, (px[i] - m) * factor + m));
  }
}
