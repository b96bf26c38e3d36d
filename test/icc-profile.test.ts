import { createHash } from 'node:crypto';
import { existsSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import sharp from 'sharp';
import { describe, expect, it } from 'vitest';
import { embedsSrgbProfile, isSrgbProfile, jpegIccProfile, pngIccProfile, webpIccProfile } from '../core/icc-profile.js';
import { decodeImage } from '../core/image.js';
import { ADOBE_D50, jpegWithIcc, makeProfile, maxConversionError, pngWithIcc } from './helpers/icc.js';
import { ALPACA_DIR, hasAlpaca, skipReason } from './helpers/shared.js';
import { makePhoto } from './helpers/tiny-model.js';

/** core/image.ts converting every embedded profile, as before the sRGB check. */
async function decodeConverting(bytes: Uint8Array, size: number): Promise<Uint8Array> {
  return (await decodeImage(bytes, { size, convertEveryProfile: true })).data;
}

function maxDiff(a: Uint8Array, b: Uint8Array): number {
  let max = 0;
  for (let i = 0; i < a.length; i++) max = Math.max(max, Math.abs(a[i] - b[i]));
  return max;
}

describe('isSrgbProfile', () => {
  it('accepts an sRGB profile, whose conversion to sRGB moves no colour by more than one level', async () => {
    const icc = makeProfile();
    expect(isSrgbProfile(icc)).toBe(true);
    expect(await maxConversionError(icc)).toBeLessThanOrEqual(1);
  }, 60_000);

  it('accepts sRGB written as a 1024-entry curve table', () => {
    const table = Array.from({ length: 1024 }, (_, i) => {
      const v = i / 1023;
      return Math.round(65535 * (v <= 0.04045 ? v / 12.92 : ((v + 0.055) / 1.055) ** 2.4));
    });
    expect(isSrgbProfile(makeProfile({ curve: { table } }))).toBe(true);
  });

  it('refuses profiles whose conversion changes pixels, and they do change them', async () => {
    const gamma22 = makeProfile({ curve: { gamma: 2.2 } });
    const adobe = makeProfile({ colorants: ADOBE_D50 });
    expect(isSrgbProfile(gamma22)).toBe(false);
    expect(isSrgbProfile(adobe)).toBe(false);
    expect(await maxConversionError(gamma22)).toBeGreaterThan(1);
    expect(await maxConversionError(adobe)).toBeGreaterThan(1);
  }, 60_000);

  it('refuses LUT-based, non-RGB and malformed profiles without throwing', () => {
    const good = makeProfile();
    expect(isSrgbProfile(makeProfile({ extra: { A2B0: new Uint8Array(64) } }))).toBe(false);
    expect(isSrgbProfile(makeProfile({ colourSpace: 'GRAY' }))).toBe(false);
    expect(isSrgbProfile(good.subarray(0, 200))).toBe(false);
    const hugeCount = good.slice();
    new DataView(hugeCount.buffer).setUint32(128, 0xffffffff);
    expect(isSrgbProfile(hugeCount)).toBe(false);
    const badOffset = good.slice();
    new DataView(badOffset.buffer).setUint32(136, 0x7fffffff);
    expect(isSrgbProfile(badOffset)).toBe(false);
    expect(isSrgbProfile(new Uint8Array(4096).map((_, i) => (i * 7919) & 255))).toBe(false);
  });
});

describe('jpegIccProfile', () => {
  it('reads the profile libvips reads, from one APP2 segment or several', async () => {
    const jpeg = await makePhoto('jpeg', 64, 48, 1);
    expect(jpegIccProfile(jpeg)).toBeUndefined();
    const pad = (n: number) => makeProfile({ extra: { zzzz: new Uint8Array(n).fill(7) } });
    for (const [icc, chunk] of [
      [makeProfile(), 65519],
      [pad(150_000), 65519],
      [pad(30_000), 1000],
    ] as const) {
      const withIcc = jpegWithIcc(jpeg, icc, chunk);
      const read = jpegIccProfile(withIcc);
      expect(read && Buffer.from(read).equals(Buffer.from(icc))).toBe(true);
      expect(Buffer.from(icc).equals((await sharp(withIcc).metadata()).icc as Buffer)).toBe(true);
    }
  });

  it('gives up on a profile with a missing or repeated chunk', async () => {
    const jpeg = await makePhoto('jpeg', 64, 48, 1);
    const icc = makeProfile();
    const split = jpegWithIcc(jpeg, icc, 100);
    const first = split.indexOf('ICC_PROFILE\0', 0, 'latin1') - 4;
    const second = split.indexOf('ICC_PROFILE\0', first + 8, 'latin1') - 4;
    const missing = Buffer.concat([split.subarray(0, second), split.subarray(second + 4 + 14 + 100)]);
    expect(jpegIccProfile(missing)).toBeUndefined();
    const repeated = Buffer.from(split);
    repeated[second + 16] = 1;
    expect(jpegIccProfile(repeated)).toBeUndefined();
    expect(embedsSrgbProfile(missing, 'jpeg')).toBe(false);
  });
});

describe('PNG and WebP profiles', () => {
  /** A WebP that libvips wrote with `icc` embedded (its pixels converted into that profile). */
  async function webpWithIcc(icc: Uint8Array, seed: number): Promise<Buffer> {
    const file = path.join(os.tmpdir(), `edgetune-icc-${process.pid}-${seed}.icc`);
    writeFileSync(file, icc);
    try {
      return await sharp(await makePhoto('png', 320, 240, seed))
        .withIccProfile(file)
        .webp({ lossless: true })
        .toBuffer();
    } finally {
      rmSync(file, { force: true });
    }
  }

  it('reads the profile libvips reads from a PNG iCCP chunk and a WebP ICCP chunk', async () => {
    const icc = makeProfile();
    const png = pngWithIcc(await makePhoto('png', 64, 48, 2), icc);
    expect(Buffer.from(pngIccProfile(png) ?? [])).toEqual(Buffer.from(icc));
    expect((await sharp(png).metadata()).icc).toEqual(Buffer.from(icc));
    const webp = await webpWithIcc(icc, 3);
    expect(Buffer.from(webpIccProfile(webp) ?? [])).toEqual((await sharp(webp).metadata()).icc);
    expect(embedsSrgbProfile(webp, 'webp')).toBe(true);
    expect(pngIccProfile(await makePhoto('png', 64, 48, 2))).toBeUndefined();
    expect(webpIccProfile(await makePhoto('webp', 64, 48, 2))).toBeUndefined();
  });

  it('gives up on a corrupt or oversized iCCP chunk', async () => {
    const png = await makePhoto('png', 64, 48, 2);
    const bomb = pngWithIcc(png, new Uint8Array(4 << 20)); // inflates past the 1 MiB a profile may have
    expect(pngIccProfile(bomb)).toBeUndefined();
    const garbage = pngWithIcc(png, makeProfile());
    garbage[33 + 8 + 6] ^= 0xff; // inside the zlib stream
    expect(() => pngIccProfile(garbage)).not.toThrow();
    expect(embedsSrgbProfile(garbage, 'png')).toBe(false);
  });

  it('skips the conversion of an sRGB profile in a PNG and keeps it for Adobe RGB', async () => {
    const png = await makePhoto('png', 500, 300, 4);
    const plain = await decodeImage(png, { size: 160 });
    const srgb = pngWithIcc(png, makeProfile());
    expect(Buffer.from((await decodeImage(srgb, { size: 160 })).data)).toEqual(Buffer.from(plain.data));
    expect(maxDiff(plain.data, await decodeConverting(srgb, 160))).toBeLessThanOrEqual(1);
    const adobe = pngWithIcc(png, makeProfile({ colorants: ADOBE_D50 }));
    const converted = await decodeImage(adobe, { size: 160 });
    expect(Buffer.from(converted.data)).toEqual(Buffer.from(await decodeConverting(adobe, 160)));
    expect(maxDiff(converted.data, plain.data)).toBeGreaterThan(10);
  });
});

describe('decodeImage with an embedded profile', () => {
  it('skips the conversion for sRGB (same pixels) and keeps it for Adobe RGB', async () => {
    const jpeg = await makePhoto('jpeg', 640, 480, 3);
    const plain = await decodeImage(jpeg, { size: 160 });

    const srgb = jpegWithIcc(jpeg, makeProfile());
    expect(embedsSrgbProfile(srgb, 'jpeg')).toBe(true);
    const skipped = await decodeImage(srgb, { size: 160 });
    expect(Buffer.from(skipped.data).equals(Buffer.from(plain.data))).toBe(true);
    expect(maxDiff(skipped.data, await decodeConverting(srgb, 160))).toBeLessThanOrEqual(1);

    const adobe = jpegWithIcc(jpeg, makeProfile({ colorants: ADOBE_D50 }));
    expect(embedsSrgbProfile(adobe, 'jpeg')).toBe(false);
    const converted = await decodeImage(adobe, { size: 160 });
    expect(Buffer.from(converted.data).equals(Buffer.from(await decodeConverting(adobe, 160)))).toBe(true);
    expect(maxDiff(converted.data, plain.data)).toBeGreaterThan(10);
  });
});

describe.skipIf(!hasAlpaca)(`the profiles in the alpaca photos ${hasAlpaca ? '' : skipReason('the alpaca dataset')}`, () => {
  const files = hasAlpaca
    ? readdirSync(ALPACA_DIR, { withFileTypes: true })
        .filter((d) => d.isDirectory())
        .flatMap((d) => readdirSync(path.join(ALPACA_DIR, d.name)).map((f) => path.join(ALPACA_DIR, d.name, f)))
    : [];

  it('are sRGB only where the conversion is within one level on every colour, and photos decode as before', async () => {
    const accepted = new Map<string, Uint8Array>();
    const refused = new Set<string>();
    let checked = 0;
    for (const file of files) {
      const bytes = new Uint8Array(readFileSync(file));
      const icc = jpegIccProfile(bytes);
      expect(icc && Buffer.from(icc)).toEqual((await sharp(bytes).metadata()).icc);
      if (!icc) continue;
      const hash = createHash('sha256').update(icc).digest('hex');
      if (!isSrgbProfile(icc)) {
        refused.add(hash);
        continue;
      }
      accepted.set(hash, icc);
      // Models trained before the check see the same pixels.
      const now = await decodeImage(bytes, { size: 224 });
      expect(Buffer.from(now.data).equals(Buffer.from(await decodeConverting(bytes, 224)))).toBe(true);
      checked++;
    }
    // Measured: 81 photos with 5 distinct sRGB profiles (HP's IEC61966-2.1, Nikon's, Canon's); 11 others refused.
    expect(checked).toBeGreaterThanOrEqual(80);
    expect(accepted.size).toBeGreaterThanOrEqual(5);
    expect(refused.size).toBeGreaterThanOrEqual(10);
    for (const icc of accepted.values()) expect(await maxConversionError(icc)).toBeLessThanOrEqual(1);
  }, 180_000);
});

const DEBIAN_ICC = '/usr/share/color/icc';
const hasDebianProfiles = existsSync(path.join(DEBIAN_ICC, 'colord/sRGB.icc')) && existsSync(path.join(DEBIAN_ICC, 'sRGB.icc'));

describe.skipIf(!hasDebianProfiles)(
  `Debian's ICC profiles (colord-data, icc-profiles-free) ${hasDebianProfiles ? '' : `skipped: not found under ${DEBIAN_ICC} (apt-get install colord-data icc-profiles-free)`}`,
  () => {
    const profiles = hasDebianProfiles
      ? [...readdirSync(DEBIAN_ICC), ...readdirSync(path.join(DEBIAN_ICC, 'colord')).map((f) => `colord/${f}`)].filter((f) =>
          /\.ic[cm]$/i.test(f),
        )
      : [];
    const read = (f: string) => new Uint8Array(readFileSync(path.join(DEBIAN_ICC, f)));

    it('accepts their sRGB profiles and refuses the other spaces', () => {
      for (const f of ['sRGB.icc', 'colord/sRGB.icc']) expect(isSrgbProfile(read(f)), f).toBe(true);
      // Other primaries, other tone curves (Rec709 has sRGB's primaries and its own curve), other spaces.
      for (const f of [
        'colord/AdobeRGB1998.icc',
        'colord/ProPhotoRGB.icc',
        'colord/AppleRGB.icc',
        'colord/Rec709.icc',
        'colord/WideGamutRGB.icc',
        'colord/SwappedRedAndGreen.icc',
        'compatibleWithAdobeRGB1998.icc',
        'Gray.icc',
        'ITULab.icc',
      ])
        expect(isSrgbProfile(read(f)), f).toBe(false);
    });

    it('every profile accepted converts no colour by more than two levels', async () => {
      const accepted = profiles.filter((f) => isSrgbProfile(read(f)));
      // Measured: the two sRGB profiles (2 levels, on 0.02% of the values) and colord's Bluish and Gamma*K display profiles (0).
      expect(accepted.length).toBeGreaterThanOrEqual(2);
      for (const f of accepted) expect(await maxConversionError(read(f)), f).toBeLessThanOrEqual(2);
    }, 180_000);
  },
);
