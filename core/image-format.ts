// Which image formats we decode, told from the bytes (never from a declared type or a file name), and
// what decoding one would cost, read from its header before any decoder runs. No sharp here: the edge
// decoder (core/image-js.ts) uses it too.

export const IMAGE_FORMATS = ['jpeg', 'png', 'webp', 'gif', 'bmp'] as const;
export type ImageFormat = (typeof IMAGE_FORMATS)[number];

export interface ImageHeader {
  format: ImageFormat;
  width: number;
  height: number;
  /**
   * What decoding costs, in pixels of an 8-bit RGB image held whole: `width * height` for formats
   * libvips decodes a line at a time, more when the decoder must hold wider pixels or the whole
   * frame (interlaced 16-bit PNG), or runs in JavaScript on the event loop (BMP).
   */
  cost: number;
}

export type DecodeFailure = 'unsupported' | 'too-large' | 'corrupt';

/**
 * Every refusal is an ImageDecodeError (callers test `err.name`, training skips and lists the file);
 * `reason` tells the API which status to answer: 415, 413 or 422.
 */
export class ImageDecodeError extends Error {
  readonly reason: DecodeFailure = 'corrupt';
  constructor(message: string) {
    super(message);
    this.name = 'ImageDecodeError';
  }
}

/** The bytes are not one of IMAGE_FORMATS (AVIF, HEIF, TIFF, SVG, PDF, ...): a 415 whatever the declared type. */
export class UnsupportedImageError extends ImageDecodeError {
  override readonly reason = 'unsupported';
}

/** The header declares more pixels (or decode cost) than the limit: refused before decoding. */
export class ImageTooLargeError extends ImageDecodeError {
  override readonly reason = 'too-large';
  constructor(
    message: string,
    readonly header: ImageHeader,
  ) {
    super(message);
  }
}

/** The reason of an error thrown by a decoder; anything that is not ours counts as corrupt input. */
export function decodeFailure(e: unknown): DecodeFailure {
  const r = (e as { reason?: unknown })?.reason;
  return r === 'unsupported' || r === 'too-large' ? r : 'corrupt';
}

/** Formats by magic bytes. BMP counts only as a candidate here; readImageHeader checks its header. */
export function sniffFormat(b: Uint8Array): ImageFormat | undefined {
  if (b.length >= 3 && b[0] === 0xff && b[1] === 0xd8 && b[2] === 0xff) return 'jpeg';
  if (b.length >= 8 && b[0] === 0x89 && b[1] === 0x50 && b[2] === 0x4e && b[3] === 0x47 && b[4] === 0x0d && b[5] === 0x0a) return 'png';
  if (
    b.length >= 6 &&
    b[0] === 0x47 &&
    b[1] === 0x49 &&
    b[2] === 0x46 &&
    b[3] === 0x38 &&
    (b[4] === 0x37 || b[4] === 0x39) &&
    b[5] === 0x61
  ) {
    return 'gif';
  }
  if (b.length >= 12 && ascii(b, 0, 4) === 'RIFF' && ascii(b, 8, 4) === 'WEBP') return 'webp';
  if (b.length >= 2 && b[0] === 0x42 && b[1] === 0x4d) return 'bmp';
  return undefined;
}

export function ascii(b: Uint8Array, at: number, n: number): string {
  let s = '';
  for (let i = at; i < at + n && i < b.length; i++) s += String.fromCharCode(b[i]);
  return s;
}
export const u16be = (b: Uint8Array, i: number) => (b[i] << 8) | b[i + 1];
const u16le = (b: Uint8Array, i: number) => b[i] | (b[i + 1] << 8);
const u24le = (b: Uint8Array, i: number) => b[i] | (b[i + 1] << 8) | (b[i + 2] << 16);
export const u32be = (b: Uint8Array, i: number) => ((b[i] << 24) >>> 0) + (b[i + 1] << 16) + (b[i + 2] << 8) + b[i + 3];
const i32le = (b: Uint8Array, i: number) => b[i] | (b[i + 1] << 8) | (b[i + 2] << 16) | (b[i + 3] << 24);
export const u32le = (b: Uint8Array, i: number) => i32le(b, i) >>> 0;

const bad = (format: string, why: string) => new ImageDecodeError(`cannot decode image: invalid ${format} header (${why})`);

function need(b: Uint8Array, n: number, format: string): void {
  if (b.length < n) throw bad(format, 'truncated');
}

/**
 * A JPEG's marker segments up to its first scan: the marker, where its data starts and how long it
 * is (the length field's own two bytes excluded). The scan (DA) or an end (D9) comes last, with no
 * data. Throws ImageDecodeError where no marker is.
 */
export function* jpegSegments(b: Uint8Array): Generator<{ marker: number; at: number; length: number }> {
  let i = 2;
  while (i + 4 <= b.length) {
    if (b[i] !== 0xff) throw bad('JPEG', `no marker at byte ${i}`);
    const m = b[i + 1];
    if (m === 0xff) {
      i++; // fill byte
      continue;
    }
    if (m === 0x01 || (m >= 0xd0 && m <= 0xd7)) {
      i += 2; // markers without a length
      continue;
    }
    if (m === 0xd9 || m === 0xda) {
      yield { marker: m, at: i + 2, length: 0 };
      return;
    }
    const len = u16be(b, i + 2);
    if (len < 2) throw bad('JPEG', 'segment length');
    yield { marker: m, at: i + 4, length: len - 2 };
    i += 2 + len;
  }
}

function jpegHeader(b: Uint8Array): [number, number] {
  for (const { marker: m, at } of jpegSegments(b)) {
    if (m === 0xd9 || m === 0xda) throw bad('JPEG', 'no frame header before the scan');
    // SOF0-SOF15 except DHT (C4), JPG (C8) and DAC (CC).
    if (m >= 0xc0 && m <= 0xcf && m !== 0xc4 && m !== 0xc8 && m !== 0xcc) {
      need(b, at + 5, 'JPEG');
      const h = u16be(b, at + 1);
      const w = u16be(b, at + 3);
      if (w === 0 || h === 0) throw bad('JPEG', 'zero width or height');
      return [w, h];
    }
  }
  throw bad('JPEG', 'truncated before the frame header');
}

function pngHeader(b: Uint8Array): ImageHeader {
  need(b, 33, 'PNG');
  if (u32be(b, 8) !== 13 || ascii(b, 12, 4) !== 'IHDR') throw bad('PNG', 'first chunk is not IHDR');
  const width = u32be(b, 16);
  const height = u32be(b, 20);
  const depth = b[24];
  const colour = b[25];
  const interlaced = b[28] === 1;
  if (width === 0 || height === 0 || width > 0x7fffffff || height > 0x7fffffff) throw bad('PNG', 'width or height');
  const channels = { 0: 1, 2: 3, 3: 3, 4: 2, 6: 4 }[colour as 0 | 2 | 3 | 4 | 6];
  if (!channels || ![1, 2, 4, 8, 16].includes(depth)) throw bad('PNG', 'colour type or bit depth');
  const pixels = width * height;
  // A non-interlaced PNG streams through libvips line by line; an interlaced one is decoded whole,
  // at its own sample width: count the bytes that frame holds, in 8-bit RGB pixels.
  const cost = interlaced ? Math.max(pixels, (pixels * channels * (depth === 16 ? 2 : 1)) / 3) : pixels;
  return { format: 'png', width, height, cost };
}

/**
 * The logical screen, grown to cover every frame: libnsgif enlarges its canvas to the largest frame
 * it scans, so a 1x1 screen holding a 65535x65535 frame is a giant too.
 */
function gifHeader(b: Uint8Array): [number, number] {
  need(b, 13, 'GIF');
  let w = u16le(b, 6);
  let h = u16le(b, 8);
  let i = 13 + (b[10] & 0x80 ? 3 * 2 ** ((b[10] & 7) + 1) : 0);
  const skipSubBlocks = () => {
    while (i < b.length && b[i] !== 0) i += b[i] + 1;
    i++;
  };
  while (i < b.length) {
    const block = b[i];
    if (block === 0x21) {
      i += 2;
      skipSubBlocks();
    } else if (block === 0x2c) {
      if (i + 10 > b.length) break;
      w = Math.max(w, u16le(b, i + 1) + u16le(b, i + 5));
      h = Math.max(h, u16le(b, i + 3) + u16le(b, i + 7));
      const packed = b[i + 9];
      i += 10 + (packed & 0x80 ? 3 * 2 ** ((packed & 7) + 1) : 0) + 1; // local colour table, LZW code size
      skipSubBlocks();
    } else {
      break; // trailer (0x3b) or garbage: nothing more a decoder would size a canvas from
    }
  }
  if (w === 0 || h === 0) throw bad('GIF', 'zero width or height');
  return [w, h];
}

function webpHeader(b: Uint8Array): [number, number] {
  need(b, 30, 'WebP');
  const chunk = ascii(b, 12, 4);
  if (chunk === 'VP8X') return [u24le(b, 24) + 1, u24le(b, 27) + 1];
  if (chunk === 'VP8L') {
    if (b[20] !== 0x2f) throw bad('WebP', 'lossless signature');
    const bits = u32le(b, 21);
    return [(bits & 0x3fff) + 1, ((bits >>> 14) & 0x3fff) + 1];
  }
  if (chunk === 'VP8 ') {
    if (b[23] !== 0x9d || b[24] !== 0x01 || b[25] !== 0x2a) throw bad('WebP', 'lossy start code');
    const w = u16le(b, 26) & 0x3fff;
    const h = u16le(b, 28) & 0x3fff;
    if (w === 0 || h === 0) throw bad('WebP', 'zero width or height');
    return [w, h];
  }
  throw bad('WebP', `unknown first chunk '${chunk}'`);
}

/**
 * BMP is decoded in JavaScript (bmp-js), so its header is checked in full first: a known DIB header,
 * one plane, a bit depth bmp-js reads, no compression it cannot read, and all the pixel rows present.
 */
function bmpHeader(b: Uint8Array): ImageHeader {
  need(b, 30, 'BMP');
  const dataAt = u32le(b, 10);
  const dib = u32le(b, 14);
  let width: number;
  let height: number;
  let bpp: number;
  let compression = 0;
  if (dib === 12) {
    width = u16le(b, 18);
    height = u16le(b, 20);
    if (u16le(b, 22) !== 1) throw bad('BMP', 'planes');
    bpp = u16le(b, 24);
  } else if ([40, 52, 56, 108, 124].includes(dib)) {
    need(b, 14 + dib, 'BMP');
    width = i32le(b, 18);
    height = Math.abs(i32le(b, 22));
    if (u16le(b, 26) !== 1) throw bad('BMP', 'planes');
    bpp = u16le(b, 28);
    compression = u32le(b, 30);
  } else {
    throw new UnsupportedImageError(`unsupported image format: BMP with a ${dib}-byte DIB header`);
  }
  if (width <= 0 || height <= 0) throw bad('BMP', 'width or height');
  if (![1, 4, 8, 16, 24, 32].includes(bpp)) throw bad('BMP', `bit depth ${bpp}`);
  if (compression !== 0 && compression !== 3)
    throw new UnsupportedImageError(`unsupported image format: compressed BMP (method ${compression})`);
  const rowBytes = Math.ceil((width * bpp) / 32) * 4;
  if (dataAt < 14 + dib || dataAt + rowBytes * height > b.length) throw bad('BMP', 'pixel data shorter than the header says');
  // bmp-js blocks the event loop and holds 4 bytes per pixel: each pixel counts 4 times.
  return { format: 'bmp', width, height, cost: width * height * 4 };
}

/** Reads the format and dimensions from the header; throws UnsupportedImageError or ImageDecodeError. */
export function readImageHeader(b: Uint8Array): ImageHeader {
  const format = sniffFormat(b);
  if (!format) throw new UnsupportedImageError(`unsupported image format: ${describeBytes(b)}; send JPEG, PNG, WebP, GIF or BMP`);
  if (format === 'png') return pngHeader(b);
  if (format === 'bmp') return bmpHeader(b);
  const [width, height] = format === 'jpeg' ? jpegHeader(b) : format === 'gif' ? gifHeader(b) : webpHeader(b);
  return { format, width, height, cost: width * height };
}

/** readImageHeader, then refuse a header whose decode cost exceeds `limitPixels`. */
export function checkImageHeader(b: Uint8Array, limitPixels: number): ImageHeader {
  const h = readImageHeader(b);
  if (h.cost > limitPixels) {
    const mp = (n: number) => `${(n / 1e6).toFixed(1)} MP`;
    const what = h.cost > h.width * h.height ? ` (decodes like ${mp(h.cost)})` : '';
    throw new ImageTooLargeError(
      `cannot decode image: the ${h.format.toUpperCase()} image is ${h.width}x${h.height}${what}, over the pixel limit of ${mp(limitPixels)} per image`,
      h,
    );
  }
  return h;
}

/** A short, safe name for what the bytes look like, for error messages. */
function describeBytes(b: Uint8Array): string {
  if (b.length >= 12 && ascii(b, 4, 4) === 'ftyp') return `ISO media '${ascii(b, 8, 4).replace(/[^\x20-\x7e]/g, '?')}' (AVIF/HEIF)`;
  if (b.length >= 4 && ((b[0] === 0x49 && b[1] === 0x49 && b[2] === 0x2a) || (b[0] === 0x4d && b[1] === 0x4d && b[3] === 0x2a)))
    return 'TIFF';
  const head = ascii(b, 0, 256).toLowerCase();
  if (head.includes('<svg') || head.startsWith('<?xml')) return 'SVG/XML';
  if (head.startsWith('%pdf')) return 'PDF';
  return 'not a JPEG, PNG, WebP, GIF or BMP';
}
