import type { RgbImage } from '../core/image.js';
import { sharp } from '../core/sharp.js';
import { type AugmentConfig, applyAugmentation, drawAugmentation } from './augment.js';
import { createRng } from './rng.js';

/** A 3x3 grid of augmented views of one image, as the notebook's figure; PNG bytes. */
export async function augmentationGrid(img: RgbImage, cfg: AugmentConfig, seed: number, gap = 4): Promise<Buffer> {
  const rng = createRng(seed);
  const s = img.width;
  const side = 3 * s + 4 * gap;
  const tiles = await Promise.all(
    Array.from({ length: 9 }, async (_, k) => {
      const px = applyAugmentation(img, drawAugmentation(cfg, rng));
      const bytes = Buffer.from(Uint8ClampedArray.from(px));
      const input = await sharp(bytes, { raw: { width: s, height: s, channels: 3 } })
        .png()
        .toBuffer();
      return { input, left: gap + (k % 3) * (s + gap), top: gap + Math.floor(k / 3) * (s + gap) };
    }),
  );
  return sharp({ create: { width: side, height: side, channels: 3, background: '#ffffff' } })
    .composite(tiles)
    .png()
    .toBuffer();
}
