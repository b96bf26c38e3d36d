// The augmentation as first written (training/augment.ts before its loops were reorganised): one
// plain loop per output pixel. Kept as the reference the faster implementation must match bit for bit.
import type { RgbImage } from '../../core/image.js';
import type { AugmentDraw } from '../../training/augment.js';

/** Keras' 'reflect' fill (d c b a | a b c d | d c b a) on integer pixel indices. */
function reflect(i: number, n: number): number {
  const period = 2 * n;
  let k = i % period;
  if (k < 0) k += period;
  return k < n ? k : period - k - 1;
}

/**
 * Flip, then rotate/zoom about the centre with bilinear sampling and reflect fill (as Keras'
 * RandomFlip + RandomRotation + RandomZoom), then contrast. Pure JS: runs in worker threads.
 * Returns HWC RGB floats in 0..255, same size as the input.
 */
export function referenceAugmentation(img: RgbImage, draw: AugmentDraw): Float32Array {
  const { width: w, height: h, data } = img;
  const out = new Float32Array(w * h * 3);
  const cx = (w - 1) / 2;
  const cy = (h - 1) / 2;
  const cos = Math.cos(draw.angle) * draw.zoom;
  const sin = Math.sin(draw.angle) * draw.zoom;
  const geometric = draw.angle !== 0 || draw.zoom !== 1;
  for (let y = 0; y < h; y++) {
    for (let x = 0; x < w; x++) {
      // Inverse map: output pixel -> source position in the (flipped) input.
      let sx = x;
      let sy = y;
      if (geometric) {
        const dx = x - cx;
        const dy = y - cy;
        sx = cos * dx + sin * dy + cx;
        sy = -sin * dx + cos * dy + cy;
      }
      if (draw.flipH) sx = w - 1 - sx;
      if (draw.flipV) sy = h - 1 - sy;
      const o = (y * w + x) * 3;
      const x0f = Math.floor(sx);
      const y0f = Math.floor(sy);
      const fx = sx - x0f;
      const fy = sy - y0f;
      if (fx === 0 && fy === 0 && x0f >= 0 && x0f < w && y0f >= 0 && y0f < h) {
        const i = (y0f * w + x0f) * 3;
        out[o] = data[i];
        out[o + 1] = data[i + 1];
        out[o + 2] = data[i + 2];
        continue;
      }
      let x0 = x0f;
      let x1 = x0f + 1;
      let y0 = y0f;
      let y1 = y0f + 1;
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
      const wa = (1 - fx) * (1 - fy);
      const wb = fx * (1 - fy);
      const wc = (1 - fx) * fy;
      const wd = fx * fy;
      out[o] = data[a] * wa + data[b] * wb + data[c] * wc + data[d] * wd;
      out[o + 1] = data[a + 1] * wa + data[b + 1] * wb + data[c + 1] * wc + data[d + 1] * wd;
      out[o + 2] = data[a + 2] * wa + data[b + 2] * wb + data[c + 2] * wc + data[d + 2] * wd;
    }
  }
  if (draw.contrast !== 1) adjustContrast(out, draw.contrast);
  return out;
}

function adjustContrast(px: Float32Array, factor: number): void {
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
