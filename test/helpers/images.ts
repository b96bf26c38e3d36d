import { mkdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import sharp from 'sharp';

/** A small solid-ish image with a gradient, encoded in the given format. */
export async function makeImage(
  format: 'jpeg' | 'png' | 'webp' | 'gif',
  opts: { width?: number; height?: number; color?: [number, number, number]; channels?: 1 | 3 | 4 } = {},
): Promise<Buffer> {
  const { width = 40, height = 30, color = [200, 60, 30], channels = 3 } = opts;
  const px = Buffer.alloc(width * height * channels);
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < width; x++) {
      const o = (y * width + x) * channels;
      for (let c = 0; c < channels; c++) px[o + c] = c === 3 ? 255 : Math.min(255, (color[c] ?? color[0]) + ((x + y) % 16));
    }
  }
  return sharp(px, { raw: { width, height, channels } }).toFormat(format).toBuffer();
}

/** Writes `{class: count}` images into class subfolders; returns the root. */
export async function makeDataset(root: string, perClass: Record<string, number>, size = 24): Promise<string> {
  const colors: [number, number, number][] = [
    [220, 40, 40],
    [40, 200, 60],
    [40, 60, 220],
    [200, 200, 40],
  ];
  let k = 0;
  for (const [cls, n] of Object.entries(perClass)) {
    const dir = path.join(root, cls);
    await mkdir(dir, { recursive: true });
    for (let i = 0; i < n; i++) {
      await writeFile(
        path.join(dir, `img_${i}.png`),
        await makeImage('png', { width: size, height: size, color: colors[k % colors.length] }),
      );
    }
    k++;
  }
  return root;
}
