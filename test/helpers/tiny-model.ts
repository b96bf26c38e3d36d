import sharp from 'sharp';

// Model fixtures come from ./model-dir.ts (makeModelDir); this file adds photo-like test images
// with alpha and EXIF orientation, which the API and decoder tests need.

/** A deterministic test photo: smooth gradients plus a few shapes, encoded as `format`. */
export async function makePhoto(
  format: 'jpeg' | 'png' | 'webp' | 'gif',
  width = 96,
  height = 64,
  seed = 1,
  opts: { alpha?: boolean; orientation?: number } = {},
): Promise<Uint8Array<ArrayBuffer>> {
  const channels = opts.alpha ? 4 : 3;
  const raw = Buffer.alloc(width * height * channels);
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < width; x++) {
      const i = (y * width + x) * channels;
      const inCircle = (x - width * 0.6) ** 2 + (y - height * 0.4) ** 2 < (Math.min(width, height) * 0.25) ** 2;
      raw[i] = (x * 255) / width;
      raw[i + 1] = inCircle ? 230 : (y * 255) / height;
      raw[i + 2] = ((x + y) * 7 * seed) % 256;
      if (channels === 4) raw[i + 3] = x < width / 2 ? 255 : 128;
    }
  }
  let img = sharp(raw, { raw: { width, height, channels } });
  if (opts.orientation) img = img.withMetadata({ orientation: opts.orientation });
  const encoded =
    format === 'jpeg'
      ? img.jpeg({ quality: 90 })
      : format === 'png'
        ? img.png()
        : format === 'webp'
          ? img.webp({ quality: 90 })
          : img.gif();
  // A plain ArrayBuffer-backed copy: usable directly as a fetch/Request body and Blob part.
  return new Uint8Array(await encoded.toBuffer());
}
