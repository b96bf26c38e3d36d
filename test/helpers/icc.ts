// ICC v2 matrix/curve profiles built in the test, and the containers that carry them, for
// test/icc-profile.test.ts and test/api-image-js.test.ts.
import { deflateSync } from 'node:zlib';
import sharp from 'sharp';
import { pngChunk } from './hostile-images.js';

type Xyz = [number, number, number];
export const SRGB_D50: Record<'r' | 'g' | 'b', Xyz> = {
  r: [0.436066, 0.222488, 0.013916],
  g: [0.385147, 0.716873, 0.097076],
  b: [0.143066, 0.060608, 0.714096],
};
/** Adobe RGB (1998) primaries adapted to D50. */
export const ADOBE_D50: Record<'r' | 'g' | 'b', Xyz> = {
  r: [0.60974, 0.31111, 0.01947],
  g: [0.20528, 0.62567, 0.06087],
  b: [0.14919, 0.06322, 0.74457],
};
/** sRGB's tone curve as an ICC parametric curve (function type 3: g, a, b, c, d). */
export const SRGB_CURVE = { para: [2.4, 1 / 1.055, 0.055 / 1.055, 1 / 12.92, 0.04045] };

export interface ProfileSpec {
  colorants?: Record<'r' | 'g' | 'b', Xyz>;
  /** A parametric curve, a gamma (`curv` with one entry) or a table of 0..65535 values. */
  curve?: { para: number[] } | { gamma: number } | { table: number[] };
  /** Extra tags by signature, e.g. a LUT tag, or padding to force a multi-chunk JPEG profile. */
  extra?: Record<string, Uint8Array>;
  colourSpace?: string;
}

export function makeProfile(spec: ProfileSpec = {}): Uint8Array {
  const colorants = spec.colorants ?? SRGB_D50;
  const curve = spec.curve ?? SRGB_CURVE;
  const tags: Array<[string, Uint8Array]> = [
    ['desc', textDescription('edgetune test profile')],
    ['wtpt', xyzTag([0.9642, 1, 0.8249])],
    ['rXYZ', xyzTag(colorants.r)],
    ['gXYZ', xyzTag(colorants.g)],
    ['bXYZ', xyzTag(colorants.b)],
  ];
  const trc = curveTag(curve);
  tags.push(['rTRC', trc], ['gTRC', trc], ['bTRC', trc]);
  for (const [sig, data] of Object.entries(spec.extra ?? {})) tags.push([sig, data]);

  const tableEnd = 132 + 12 * tags.length;
  const offsets: number[] = [];
  let at = tableEnd;
  for (const [, data] of tags) {
    offsets.push(at);
    at += (data.length + 3) & ~3;
  }
  const out = new Uint8Array(at);
  const view = new DataView(out.buffer);
  view.setUint32(0, at);
  put(out, 4, 'lcms');
  view.setUint32(8, 0x02100000);
  put(out, 12, 'mntr');
  put(out, 16, spec.colourSpace ?? 'RGB ');
  put(out, 20, 'XYZ ');
  put(out, 36, 'acsp');
  setXyz(view, 68, [0.9642, 1, 0.8249]);
  view.setUint32(128, tags.length);
  tags.forEach(([sig, data], t) => {
    put(out, 132 + 12 * t, sig);
    view.setUint32(136 + 12 * t, offsets[t]);
    view.setUint32(140 + 12 * t, data.length);
    out.set(data, offsets[t]);
  });
  return out;
}

function curveTag(curve: NonNullable<ProfileSpec['curve']>): Uint8Array {
  if ('para' in curve) {
    const types: Record<number, number> = { 1: 0, 3: 1, 4: 2, 5: 3, 7: 4 };
    const tag = new Uint8Array(12 + 4 * curve.para.length);
    const view = new DataView(tag.buffer);
    put(tag, 0, 'para');
    view.setUint16(8, types[curve.para.length]);
    for (const [k, p] of curve.para.entries()) view.setInt32(12 + 4 * k, Math.round(p * 65536));
    return tag;
  }
  const values = 'gamma' in curve ? [Math.round(curve.gamma * 256)] : curve.table;
  const tag = new Uint8Array(12 + 2 * values.length);
  const view = new DataView(tag.buffer);
  put(tag, 0, 'curv');
  view.setUint32(8, values.length);
  for (const [k, v] of values.entries()) view.setUint16(12 + 2 * k, v);
  return tag;
}

function xyzTag(xyz: Xyz): Uint8Array {
  const tag = new Uint8Array(20);
  put(tag, 0, 'XYZ ');
  setXyz(new DataView(tag.buffer), 8, xyz);
  return tag;
}

function textDescription(text: string): Uint8Array {
  const tag = new Uint8Array(12 + text.length + 1 + 4 + 4 + 2 + 1 + 67);
  put(tag, 0, 'desc');
  new DataView(tag.buffer).setUint32(8, text.length + 1);
  put(tag, 12, text);
  return tag;
}

function setXyz(view: DataView, at: number, xyz: Xyz): void {
  for (const [k, v] of xyz.entries()) view.setInt32(at + 4 * k, Math.round(v * 65536));
}

function put(b: Uint8Array, at: number, s: string): void {
  for (let i = 0; i < s.length; i++) b[at + i] = s.charCodeAt(i);
}

/** The PNG with an iCCP chunk carrying `icc` spliced in after IHDR. */
export function pngWithIcc(png: Uint8Array, icc: Uint8Array): Buffer {
  const chunk = pngChunk('iCCP', Buffer.concat([Buffer.from('icc\0\0', 'latin1'), deflateSync(icc)]));
  return Buffer.concat([png.subarray(0, 33), chunk, png.subarray(33)]);
}

/** The JPEG with `icc` as APP2 ICC_PROFILE segments of at most `chunk` bytes each, right after SOI. */
export function jpegWithIcc(jpeg: Uint8Array, icc: Uint8Array, chunk = 65519): Buffer {
  const count = Math.ceil(icc.length / chunk);
  const segments: Buffer[] = [];
  for (let s = 0; s < count; s++) {
    const part = icc.subarray(s * chunk, (s + 1) * chunk);
    const seg = Buffer.alloc(4 + 14 + part.length);
    seg.writeUInt16BE(0xffe2, 0);
    seg.writeUInt16BE(2 + 14 + part.length, 2);
    seg.write('ICC_PROFILE\0', 4, 'latin1');
    seg[16] = s + 1;
    seg[17] = count;
    seg.set(part, 18);
    segments.push(seg);
  }
  return Buffer.concat([jpeg.subarray(0, 2), ...segments, jpeg.subarray(2)]);
}

let allColoursPng: Promise<{ raw: Buffer; png: Buffer }> | undefined;

/** A 4096x4096 PNG holding each of the 2^24 8-bit colours once, and its raw pixels. */
export function allColours(): Promise<{ raw: Buffer; png: Buffer }> {
  allColoursPng ??= (async () => {
    const raw = Buffer.alloc(4096 * 4096 * 3);
    for (let i = 0; i < 4096 * 4096; i++) {
      raw[3 * i] = i & 255;
      raw[3 * i + 1] = (i >> 8) & 255;
      raw[3 * i + 2] = i >> 16;
    }
    const png = await sharp(raw, { raw: { width: 4096, height: 4096, channels: 3 } })
      .png({ compressionLevel: 1 })
      .toBuffer();
    return { raw, png };
  })();
  return allColoursPng;
}

/** The largest change, in 8-bit levels, that sharp's conversion from `icc` to sRGB makes to any colour. */
export async function maxConversionError(icc: Uint8Array): Promise<number> {
  const { raw, png } = await allColours();
  const converted = await sharp(pngWithIcc(png, icc)).toColourspace('srgb').removeAlpha().raw().toBuffer();
  let max = 0;
  for (let i = 0; i < raw.length; i++) {
    const d = Math.abs(converted[i] - raw[i]);
    if (d > max) max = d;
  }
  return max;
}
