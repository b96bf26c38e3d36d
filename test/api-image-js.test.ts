import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import sharp from 'sharp';
import { describe, expect, it } from 'vitest';
import { decodeImage, type PreprocessOptions } from '../core/image.js';
import { decodeImageJs } from '../core/image-js.js';
import { ADOBE_D50, jpegWithIcc, makeProfile, pngWithIcc } from './helpers/icc.js';
import { ALPACA_DIR, hasAlpaca, skipReason } from './helpers/shared.js';
import { makePhoto } from './helpers/tiny-model.js';

/** Mean and max absolute difference between the sharp and the WASM pipeline, per 0..255 channel value. */
async function compare(bytes: Uint8Array, opts: PreprocessOptions): Promise<{ mad: number; max: number }> {
  const a = await decodeImage(bytes, opts);
  const b = await decodeImageJs(bytes, opts);
  expect([b.width, b.height, b.data.length]).toEqual([a.width, a.height, a.data.length]);
  let sum = 0;
  let max = 0;
  for (let i = 0; i < a.data.length; i++) {
    const d = Math.abs(a.data[i] - b.data[i]);
    sum += d;
    if (d > max) max = d;
  }
  return { mad: sum / a.data.length, max };
}

describe('core/image-js (libvips in WASM) against core/image (sharp)', () => {
  const cases: Array<[string, () => Promise<Uint8Array>, PreprocessOptions]> = [
    ['JPEG 1024x768 -> 160 (shrink-on-load path)', () => makePhoto('jpeg', 1024, 768, 1), { size: 160 }],
    ['JPEG 1024x768 -> 224', () => makePhoto('jpeg', 1024, 768, 2), { size: 224 }],
    ['JPEG 640x480 EXIF orientation 6 -> 160', () => makePhoto('jpeg', 640, 480, 3, { orientation: 6 }), { size: 160 }],
    ['JPEG 300x200 EXIF orientation 3 -> 96, crop', () => makePhoto('jpeg', 300, 200, 4, { orientation: 3 }), { size: 96, resize: 'crop' }],
    ['PNG with alpha 500x300 -> 160', () => makePhoto('png', 500, 300, 5, { alpha: true }), { size: 160 }],
    ['PNG 50x70 upscaled -> 64', () => makePhoto('png', 50, 70, 6), { size: 64 }],
    ['WebP 800x600 -> 160 (scaled load)', () => makePhoto('webp', 800, 600, 7), { size: 160 }],
    ['GIF 200x150 -> 160', () => makePhoto('gif', 200, 150, 8), { size: 160 }],
    [
      'JPEG 640x480 with an sRGB profile (not converted) -> 160',
      async () => jpegWithIcc(await makePhoto('jpeg', 640, 480, 10), makeProfile()),
      { size: 160 },
    ],
    [
      'JPEG 640x480 with an Adobe RGB profile (converted) -> 160',
      async () => jpegWithIcc(await makePhoto('jpeg', 640, 480, 11), makeProfile({ colorants: ADOBE_D50 })),
      { size: 160 },
    ],
    [
      'PNG 500x300 with an sRGB profile (not converted) -> 160',
      async () => pngWithIcc(await makePhoto('png', 500, 300, 12), makeProfile()),
      { size: 160 },
    ],
    [
      'greyscale JPEG 400x300 -> 128',
      async () =>
        sharp(await makePhoto('png', 400, 300, 9))
          .greyscale()
          .jpeg()
          .toBuffer(),
      { size: 128 },
    ],
  ];
  const figures: Record<string, string> = {};
  for (const [name, make, opts] of cases) {
    it(`decodes ${name} to nearly the same pixels`, async () => {
      const { mad, max } = await compare(await make(), opts);
      figures[name] = `mad ${mad.toFixed(3)} max ${max}`;
      // Measured: bit-identical (mad 0) for every case here; the bound leaves room for library version drift.
      expect(mad).toBeLessThan(0.5);
    });
  }

  it('takes the first frame of an animated GIF, like sharp', async () => {
    const frame = (v: number) =>
      sharp(Buffer.alloc(40 * 30 * 3, v), { raw: { width: 40, height: 30, channels: 3 } })
        .png()
        .toBuffer();
    const gif = await sharp([await frame(200), await frame(20)], { join: { animated: true } })
      .gif()
      .toBuffer();
    expect((await sharp(gif).metadata()).pages).toBe(2);
    const { data } = await decodeImageJs(gif, { size: 16 });
    expect(data.length).toBe(16 * 16 * 3);
    expect(Math.min(...data)).toBeGreaterThan(150);
    expect((await compare(gif, { size: 16 })).mad).toBe(0);
  });

  it('rejects undecodable bytes and decompression bombs with ImageDecodeError', async () => {
    await expect(decodeImageJs(new Uint8Array([1, 2, 3, 4, 5]), { size: 32 })).rejects.toMatchObject({ name: 'ImageDecodeError' });
    const jpeg = await makePhoto('jpeg', 400, 300);
    await expect(decodeImageJs(jpeg.subarray(0, 100), { size: 32 })).rejects.toMatchObject({ name: 'ImageDecodeError' });
    await expect(decodeImageJs(jpeg, { size: 32, limitInputPixels: 100_000 })).rejects.toThrow(/pixel limit/);
  });

  it.skipIf(!hasAlpaca)(
    `matches sharp on real alpaca photos at 160 and 224 ${hasAlpaca ? '' : skipReason('datasets/alpaca')}`,
    async () => {
      const files = readdirSync(path.join(ALPACA_DIR, 'alpaca')).sort().slice(0, 12);
      for (const size of [160, 224]) {
        let sum = 0;
        for (const f of files) sum += (await compare(readFileSync(path.join(ALPACA_DIR, 'alpaca', f)), { size })).mad;
        figures[`alpaca photos -> ${size}`] = `mad ${(sum / files.length).toFixed(3)}`;
        expect(sum / files.length).toBeLessThan(0.5);
      }
    },
  );

  it('prints the measured differences', () => {
    console.log('sharp vs wasm-vips mean abs difference (0..255 scale)', figures);
  });
});
