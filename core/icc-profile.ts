// Embedded ICC profiles that describe sRGB itself. Both decoders (sharp, wasm-vips) convert an
// image with an embedded profile to sRGB through lcms, a float transform of every pixel that costs
// ~10 ms for a 0.8 MP photo on a 2-vCPU host. For a profile that is sRGB the result is the pixels
// as stored, up to rounding: sRGB profiles round the primaries' matrix differently in the fourth
// decimal, so lcms moves a few colours by one or two levels (test/icc-profile.test.ts runs every
// 8-bit colour through each accepted profile, the alpaca photos' and Debian's). The decoders skip
// the transform for those. Anything else, or anything unusual about the profile, keeps it.
import { inflateSync } from 'node:zlib';
import { ascii, jpegSegments, u16be as u16, u32be as u32, u32le } from './image-format.js';

/** Whether the image's embedded ICC profile (JPEG, PNG or WebP) is sRGB. */
export function embedsSrgbProfile(bytes: Uint8Array, format: string): boolean {
  const icc = iccProfile(bytes, format);
  return icc !== undefined && isSrgbProfile(icc);
}

/** The embedded ICC profile as libvips reads it, or undefined if none, malformed or another format. */
export function iccProfile(bytes: Uint8Array, format: string): Uint8Array | undefined {
  if (format === 'jpeg') return jpegIccProfile(bytes);
  if (format === 'png') return pngIccProfile(bytes);
  if (format === 'webp') return webpIccProfile(bytes);
  return undefined;
}

/** The PNG's iCCP chunk, inflated (at most 1 MiB), from the chunks before the image data. */
export function pngIccProfile(b: Uint8Array): Uint8Array | undefined {
  let i = 8;
  while (i + 12 <= b.length) {
    const len = u32(b, i);
    const type = ascii(b, i + 4, 4);
    if (type === 'IDAT' || type === 'IEND' || i + 12 + len > b.length) return undefined;
    if (type === 'iCCP') {
      const data = b.subarray(i + 8, i + 8 + len);
      const nul = data.indexOf(0);
      if (nul < 1 || nul > 79 || data[nul + 1] !== 0) return undefined;
      try {
        return new Uint8Array(inflateSync(data.subarray(nul + 2), { maxOutputLength: MAX_PROFILE_BYTES }));
      } catch {
        return undefined;
      }
    }
    i += 12 + len;
  }
  return undefined;
}

/** The WebP's ICCP chunk (extended format: VP8X first). */
export function webpIccProfile(b: Uint8Array): Uint8Array | undefined {
  let i = 12;
  while (i + 8 <= b.length) {
    const type = ascii(b, i, 4);
    const len = u32le(b, i + 4);
    if (i + 8 + len > b.length) return undefined;
    if (type === 'ICCP') return b.subarray(i + 8, i + 8 + len);
    if (type !== 'VP8X') return undefined; // ICCP follows VP8X directly, before the image data
    i += 8 + len + (len & 1);
  }
  return undefined;
}

/** The JPEG's ICC profile (APP2 `ICC_PROFILE` chunks before the scan), or undefined if none or malformed. */
export function jpegIccProfile(b: Uint8Array): Uint8Array | undefined {
  const chunks: Uint8Array[] = [];
  let count = 0;
  try {
    for (const { marker, at, length } of jpegSegments(b)) {
      if (at + length > b.length) return undefined;
      if (marker !== 0xe2 || length < 14 || ascii(b, at, 12) !== 'ICC_PROFILE\0') continue;
      const seq = b[at + 12];
      const n = b[at + 13];
      if (seq < 1 || n < 1 || (count && n !== count) || seq > n || chunks[seq - 1]) return undefined;
      count = n;
      chunks[seq - 1] = b.subarray(at + 14, at + length);
    }
  } catch {
    return undefined; // not a marker where one should be: libvips decides
  }
  if (!count) return undefined;
  let size = 0;
  for (let s = 0; s < count; s++) {
    if (!chunks[s]) return undefined;
    size += chunks[s].length;
  }
  const out = new Uint8Array(size);
  let at = 0;
  for (const c of chunks) {
    out.set(c, at);
    at += c.length;
  }
  return out;
}

const MAX_PROFILE_BYTES = 1 << 20;

// IEC 61966-2-1 primaries adapted to the D50 connection space (Bradford), as ICC sRGB profiles store them.
const SRGB_COLORANTS: Record<string, [number, number, number]> = {
  rXYZ: [0.436066, 0.222488, 0.013916],
  gXYZ: [0.385147, 0.716873, 0.097076],
  bXYZ: [0.143066, 0.060608, 0.714096],
};
/** Colorants are stored as s15Fixed16; profiles round the adapted matrix differently in the 4th place. */
const COLORANT_TOLERANCE = 0.0015;
/** Every 8-bit code must come back within this many levels through the profile's curve and sRGB's inverse. */
const CURVE_TOLERANCE = 0.5;
/** Tags through which lcms would convert instead of the matrix and curves (LUT-based profiles). */
const LUT_TAGS = ['A2B0', 'A2B1', 'A2B2', 'B2A0', 'B2A1', 'B2A2', 'D2B0', 'D2B1', 'D2B2', 'D2B3'];

/**
 * True when the profile is a matrix/curve RGB profile whose primaries and tone curves are sRGB's, so
 * converting from it to sRGB changes no pixel by more than rounding (two levels). Conservative: any
 * LUT tag, other colour space or unreadable tag answers false.
 */
export function isSrgbProfile(icc: Uint8Array): boolean {
  if (icc.length < 132 || icc.length > MAX_PROFILE_BYTES) return false;
  if (ascii(icc, 16, 4) !== 'RGB ' || ascii(icc, 20, 4) !== 'XYZ ' || ascii(icc, 36, 4) !== 'acsp') return false;
  const tags = new Map<string, Uint8Array>();
  const n = u32(icc, 128);
  if (n > 100 || 132 + n * 12 > icc.length) return false;
  for (let t = 0; t < n; t++) {
    const at = 132 + t * 12;
    const off = u32(icc, at + 4);
    const size = u32(icc, at + 8);
    if (off + size > icc.length || size < 8) return false;
    tags.set(ascii(icc, at, 4), icc.subarray(off, off + size));
  }
  if (LUT_TAGS.some((t) => tags.has(t))) return false;
  for (const [sig, want] of Object.entries(SRGB_COLORANTS)) {
    const tag = tags.get(sig);
    if (!tag || tag.length < 20 || ascii(tag, 0, 4) !== 'XYZ ') return false;
    for (let k = 0; k < 3; k++) if (Math.abs(s15f16(tag, 8 + 4 * k) - want[k]) > COLORANT_TOLERANCE) return false;
  }
  for (const sig of ['rTRC', 'gTRC', 'bTRC']) {
    const curve = readCurve(tags.get(sig));
    if (!curve) return false;
    for (let code = 0; code < 256; code++) {
      if (Math.abs(srgbEncode(curve(code / 255)) * 255 - code) > CURVE_TOLERANCE) return false;
    }
  }
  return true;
}

/** A `curv` (table or gamma) or `para` tone curve as a function on [0, 1]; undefined if unreadable. */
function readCurve(tag: Uint8Array | undefined): ((x: number) => number) | undefined {
  if (!tag || tag.length < 12) return undefined;
  const type = ascii(tag, 0, 4);
  if (type === 'curv') {
    const count = u32(tag, 8);
    if (tag.length < 12 + 2 * count) return undefined;
    if (count === 0) return (x) => x;
    if (count === 1) {
      const gamma = u16(tag, 12) / 256;
      return (x) => x ** gamma;
    }
    return (x) => {
      const pos = x * (count - 1);
      const lo = Math.min(Math.floor(pos), count - 2);
      const f = pos - lo;
      return (u16(tag, 12 + 2 * lo) * (1 - f) + u16(tag, 14 + 2 * lo) * f) / 65535;
    };
  }
  if (type === 'para') {
    const fn = u16(tag, 8);
    const params = [1, 3, 4, 5, 7][fn];
    if (params === undefined || tag.length < 12 + 4 * params) return undefined;
    const [g, a = 1, b = 0, c = 0, d = 0, e = 0, f = 0] = Array.from({ length: params }, (_, k) => s15f16(tag, 12 + 4 * k));
    if (fn === 0) return (x) => x ** g;
    if (fn === 1) return (x) => (x >= -b / a ? (a * x + b) ** g : 0);
    if (fn === 2) return (x) => (x >= -b / a ? (a * x + b) ** g + c : c);
    if (fn === 3) return (x) => (x >= d ? (a * x + b) ** g : c * x);
    return (x) => (x >= d ? (a * x + b) ** g + e : c * x + f);
  }
  return undefined;
}

function srgbEncode(y: number): number {
  const v = Math.min(1, Math.max(0, y));
  return v <= 0.0031308 ? 12.92 * v : 1.055 * v ** (1 / 2.4) - 0.055;
}

const s15f16 = (b: Uint8Array, i: number) => ((b[i] << 24) | (b[i + 1] << 16) | (b[i + 2] << 8) | b[i + 3]) / 65536;
