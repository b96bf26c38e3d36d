// Hostile inputs: formats we do not decode (written by sharp's own encoders), headers that declare
// giants in every format we do decode (crafted byte by byte, valid up to the pixel data), a real
// interlaced 16-bit PNG, a real 1-bit BMP giant, and many-part multipart bodies.
import { crc32 } from 'node:zlib';
import sharp from 'sharp';

const solid = (width: number, height: number) => sharp({ create: { width, height, channels: 3, background: { r: 200, g: 120, b: 40 } } });

/** AVIF, HEIF (AV1 in HEIF), TIFF and SVG: real files of formats the API refuses. */
export async function foreignFormats(width = 64, height = 48): Promise<Record<'avif' | 'heif' | 'tiff' | 'svg', Uint8Array>> {
  return {
    avif: new Uint8Array(await solid(width, height).avif({ effort: 0 }).toBuffer()),
    heif: new Uint8Array(await solid(width, height).heif({ compression: 'av1', effort: 0 }).toBuffer()),
    tiff: new Uint8Array(await solid(width, height).tiff().toBuffer()),
    svg: new TextEncoder().encode(
      `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}"><rect width="100%" height="100%" fill="#c87828"/></svg>`,
    ),
  };
}

/** A tiny AVIF declaring a giant canvas (the probe: ~1.5 KB declaring 7071x7071). */
export async function avifGiant(side = 7071): Promise<Uint8Array> {
  return new Uint8Array(await solid(side, side).avif({ effort: 0, quality: 1 }).toBuffer());
}

/** A PNG chunk: length, type, data and its CRC. */
export function pngChunk(type: string, data: Uint8Array): Uint8Array {
  const out = new Uint8Array(12 + data.length);
  const v = new DataView(out.buffer);
  v.setUint32(0, data.length);
  out.set(new TextEncoder().encode(type), 4);
  out.set(data, 8);
  v.setUint32(8 + data.length, crc32(out.subarray(4, 8 + data.length)));
  return out;
}

export const concat = (...parts: Uint8Array[]) => {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let o = 0;
  for (const p of parts) {
    out.set(p, o);
    o += p.length;
  }
  return out;
};

/** A PNG with a valid IHDR (and CRC) declaring width x height, then a few bytes of IDAT. */
export function pngHeaderOnly(
  width: number,
  height: number,
  opts: { depth?: number; colour?: number; interlace?: boolean } = {},
): Uint8Array {
  const ihdr = new Uint8Array(13);
  const v = new DataView(ihdr.buffer);
  v.setUint32(0, width);
  v.setUint32(4, height);
  ihdr[8] = opts.depth ?? 8;
  ihdr[9] = opts.colour ?? 2;
  ihdr[12] = opts.interlace ? 1 : 0;
  const sig = new Uint8Array([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]);
  return concat(
    sig,
    pngChunk('IHDR', ihdr),
    pngChunk('IDAT', new Uint8Array([0x78, 0x9c, 0x63, 0, 0, 0, 1, 0, 1])),
    pngChunk('IEND', new Uint8Array()),
  );
}

/** A JPEG whose SOF0 declares width x height (after a small APP0), then the start of a scan. */
export function jpegHeaderOnly(width: number, height: number): Uint8Array {
  const app0 = [0xff, 0xe0, 0, 16, 0x4a, 0x46, 0x49, 0x46, 0, 1, 1, 0, 0, 1, 0, 1, 0, 0];
  const sof = [0xff, 0xc0, 0, 17, 8, height >> 8, height & 255, width >> 8, width & 255, 3, 1, 0x11, 0, 2, 0x11, 0, 3, 0x11, 0];
  return new Uint8Array([0xff, 0xd8, ...app0, ...sof, 0xff, 0xda, 0, 12, 3, 1, 0, 2, 0, 3, 0, 0, 63, 0, 1, 2, 3, 0xff, 0xd9]);
}

/** A GIF89a whose logical screen (and one image) is width x height. */
export function gifHeaderOnly(width: number, height: number): Uint8Array {
  return gifScreenAndFrame(width, height, width, height);
}

/** A GIF89a with a `sw` x `sh` logical screen and, after a comment extension, one `fw` x `fh` frame. */
export function gifScreenAndFrame(sw: number, sh: number, fw: number, fh: number): Uint8Array {
  const le = (n: number) => [n & 255, n >> 8];
  return new Uint8Array([
    ...new TextEncoder().encode('GIF89a'),
    ...le(sw),
    ...le(sh),
    0x80,
    0,
    0,
    ...[0, 0, 0, 255, 255, 255],
    ...[0x21, 0xfe, 3, 0x61, 0x62, 0x63, 0],
    0x2c,
    0,
    0,
    0,
    0,
    ...le(fw),
    ...le(fh),
    0,
    2,
    2,
    0x4c,
    1,
    0,
    0x3b,
  ]);
}

/** WebP headers declaring width x height: VP8X (extended, up to 2^24), VP8L (lossless) or VP8 (lossy, up to 16383). */
export function webpHeaderOnly(width: number, height: number, kind: 'VP8X' | 'VP8L' | 'VP8 ' = 'VP8X'): Uint8Array {
  const b = new Uint8Array(64);
  const v = new DataView(b.buffer);
  b.set(new TextEncoder().encode('RIFF'), 0);
  v.setUint32(4, b.length - 8, true);
  b.set(new TextEncoder().encode(`WEBP${kind}`), 8);
  v.setUint32(16, 32, true);
  if (kind === 'VP8X') {
    const w = width - 1;
    const h = height - 1;
    b.set([w & 255, (w >> 8) & 255, (w >> 16) & 255, h & 255, (h >> 8) & 255, (h >> 16) & 255], 24);
  } else if (kind === 'VP8L') {
    b[20] = 0x2f;
    v.setUint32(21, ((width - 1) & 0x3fff) | (((height - 1) & 0x3fff) << 14), true);
  } else {
    b.set([0x10, 0x02, 0x00, 0x9d, 0x01, 0x2a], 20);
    v.setUint16(26, width & 0x3fff, true);
    v.setUint16(28, height & 0x3fff, true);
  }
  return b;
}

/** A BMP (BITMAPINFOHEADER) of width x height at `bpp` bits; `rows` false gives the header only. */
export function bmpFile(width: number, height: number, bpp = 1, rows = true): Uint8Array {
  const palette = bpp <= 8 ? 4 * 2 ** bpp : 0;
  const dataAt = 14 + 40 + palette;
  const rowBytes = Math.ceil((width * bpp) / 32) * 4;
  const size = dataAt + (rows ? rowBytes * height : 0);
  const b = new Uint8Array(size);
  const v = new DataView(b.buffer);
  b[0] = 0x42;
  b[1] = 0x4d;
  v.setUint32(2, size, true);
  v.setUint32(10, dataAt, true);
  v.setUint32(14, 40, true);
  v.setInt32(18, width, true);
  v.setInt32(22, height, true);
  v.setUint16(26, 1, true);
  v.setUint16(28, bpp, true);
  if (palette) for (let i = 0; i < palette; i += 4) b.fill(i % 8 === 0 ? 0 : 255, 54 + i, 54 + i + 3);
  if (rows) for (let i = dataAt; i < size; i += 7) b[i] = 0x5a;
  return b;
}

/** A real, mostly flat interlaced 16-bit RGB PNG (small file, costly decode). */
export async function png16Interlaced(width: number, height: number): Promise<Uint8Array> {
  const img = sharp({ create: { width, height, channels: 3, background: { r: 10, g: 200, b: 90 } } }).composite([
    { input: { create: { width: Math.max(1, width >> 3), height: Math.max(1, height >> 3), channels: 3, background: '#123456' } } },
  ]);
  return new Uint8Array(await img.toColourspace('rgb16').png({ progressive: true, compressionLevel: 9 }).toBuffer());
}

/** A multipart/form-data body of `parts` parts, every one an `image` file holding `partBytes`. */
export function manyPartBody(parts: number, partBytes: Uint8Array = new Uint8Array([0x89, 0x50])): { body: Uint8Array; type: string } {
  const boundary = 'hostile-boundary-7MA4YWxkTrZu0gW';
  const head = new TextEncoder().encode(
    `--${boundary}\r\nContent-Disposition: form-data; name="image"; filename="x.png"\r\nContent-Type: image/png\r\n\r\n`,
  );
  const tail = new TextEncoder().encode('\r\n');
  const one = concat(head, partBytes, tail);
  const end = new TextEncoder().encode(`--${boundary}--\r\n`);
  const body = new Uint8Array(one.length * parts + end.length);
  for (let i = 0; i < parts; i++) body.set(one, i * one.length);
  body.set(end, one.length * parts);
  return { body, type: `multipart/form-data; boundary=${boundary}` };
}

/** A multipart body with the given files as `image` parts. */
export function multipartOf(files: { bytes: Uint8Array; type: string }[]): { body: Uint8Array; type: string } {
  const boundary = 'hostile-boundary-Qm9vYmF6';
  const enc = new TextEncoder();
  const chunks: Uint8Array[] = [];
  for (const [i, f] of files.entries()) {
    chunks.push(
      enc.encode(`--${boundary}\r\nContent-Disposition: form-data; name="image"; filename="f${i}"\r\nContent-Type: ${f.type}\r\n\r\n`),
    );
    chunks.push(f.bytes, enc.encode('\r\n'));
  }
  chunks.push(enc.encode(`--${boundary}--\r\n`));
  return { body: concat(...chunks), type: `multipart/form-data; boundary=${boundary}` };
}
