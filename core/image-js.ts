// Image preprocessing without sharp, for runtimes where native modules cannot load (Lambda@Edge
// bundles). It runs libvips, the library inside sharp, compiled to WebAssembly (wasm-vips), and
// replays sharp's pipeline from core/image.ts step by step (JPEG shrink-on-load, WebP scaled
// load, orientation, ICC profile to sRGB, premultiplied-alpha linear resize) so serving sees nearly the same pixels
// as training. Measured against sharp: see test/api-image-js.test.ts.

import { embedsSrgbProfile } from './icc-profile.js';
import type { PreprocessOptions, RgbImage } from './image.js';
import { checkImageHeader, ImageDecodeError, ImageTooLargeError, UnsupportedImageError } from './image-format.js';

export { ImageDecodeError, ImageTooLargeError, UnsupportedImageError };

type VipsModule = Awaited<ReturnType<typeof import('wasm-vips')>>;
type VipsImage = InstanceType<VipsModule['Image']>;

const DEFAULT_LIMIT_INPUT_PIXELS = 50_000_000;
let vipsPromise: Promise<VipsModule> | undefined;
const JS_LOADERS = ['VipsForeignLoadJpeg', 'VipsForeignLoadPng', 'VipsForeignLoadWebp', 'VipsForeignLoadNsgif'];

/** How many images reached libvips (tests check that a refused format never does). */
export const decodeCounterJs = { vips: 0 };

/** Starts libvips once per process (~0.1 s); the optional HEIF/JXL/SVG modules are not loaded. */
export function initVips(): Promise<VipsModule> {
  vipsPromise ??= import('wasm-vips').then(async (m) => {
    const vips = await m.default({ dynamicLibraries: [] });
    // Per-image work is small; a larger pool only adds wake-up latency on 1-2 vCPUs.
    vips.concurrency(1);
    // Only the four loaders we use: whatever gets past the header check cannot reach TIFF, HEIF, etc.
    vips.operationBlock('VipsForeignLoad', true);
    for (const loader of JS_LOADERS) vips.operationBlock(loader, false);
    return vips;
  });
  return vipsPromise;
}

/** Loader-specific options (jpegload shrink, webpload scale) are passed through; the typings list only the common ones. */
function loadOptions(extra: { shrink?: number; scale?: number }): { fail_on: string } {
  return { fail_on: 'error', ...extra };
}

/** sharp's JPEG shrink-on-load choice (pipeline.cc, fastShrinkOnLoad: true). */
function jpegShrinkOnLoad(shrink: number): number {
  let s = shrink >= 8 ? 8 : shrink >= 4 ? 4 : shrink >= 2 ? 2 : 1;
  if (s > 1 && Math.trunc(shrink) === s) s /= 2; // libjpeg rounding errors
  return s;
}

/** Same contract as core/image.ts `decodeImage`: decoded, oriented, sRGB, no alpha, size x size. */
export async function decodeImageJs(bytes: Uint8Array, opts: PreprocessOptions): Promise<RgbImage> {
  const { size, resize = 'stretch', limitInputPixels = DEFAULT_LIMIT_INPUT_PIXELS } = opts;
  const header = checkImageHeader(bytes, limitInputPixels);
  // libvips has no BMP loader of its own (sharp's path decodes it in JS); the edge bundle refuses it.
  if (header.format === 'bmp')
    throw new UnsupportedImageError('unsupported image format: BMP is not decoded at the edge; send JPEG, PNG, WebP or GIF');
  const vips = await initVips();
  decodeCounterJs.vips++;
  const owned: VipsImage[] = [];
  const keep = (im: VipsImage) => {
    owned.push(im);
    return im;
  };
  try {
    const kind = header.format;
    // Headers only: nothing is decoded until pixels are asked for.
    let im = keep(vips.Image.newFromBuffer(bytes, '', { fail_on: 'error' }));
    const pixels = im.width * im.height;
    if (pixels > limitInputPixels) throw new Error(`Input image exceeds pixel limit (${im.width}x${im.height})`);
    const orientation = im.getTypeof('orientation') !== 0 ? im.getInt('orientation') : 1;

    const shrinkFor = (w: number, h: number): [number, number] => {
      const hs = w / size;
      const vs = h / size;
      return resize === 'crop' ? [Math.min(hs, vs), Math.min(hs, vs)] : [hs, vs];
    };
    // sharp's rotate() + resize() order: shrink-on-load, resize, and only then apply EXIF orientation
    // (the target is square, so swapping it for 90/270 degree orientations changes nothing).
    if (kind === 'jpeg' || kind === 'webp') {
      const [hs, vs] = shrinkFor(im.width, im.height);
      const shrink = Math.min(hs, vs);
      if (kind === 'jpeg') {
        const s = jpegShrinkOnLoad(shrink);
        if (s > 1) im = keep(vips.Image.newFromBuffer(bytes, '', loadOptions({ shrink: s })));
      } else if (shrink > 1) {
        im = keep(vips.Image.newFromBuffer(bytes, '', loadOptions({ scale: 1 / shrink })));
      }
    }

    // Like sharp: move to sRGB through the embedded ICC profile (perceptual), or from CMYK; an sRGB
    // profile is left alone, as core/image.ts does.
    const interp = im.interpretation;
    if (im.getTypeof('icc-profile-data') !== 0 && interp !== 'labs' && interp !== 'grey16' && !embedsSrgbProfile(bytes, kind)) {
      const depth = interp === 'rgb16' || interp === 'grey16' ? 16 : 8;
      try {
        im = keep(im.iccTransform('srgb', { embedded: true, depth, intent: 'perceptual' }));
      } catch {
        // sharp goes on without the profile when it is invalid; so do we.
      }
    } else if (interp === 'cmyk') {
      im = keep(im.iccTransform('srgb', { input_profile: 'cmyk', intent: 'perceptual' }));
    }

    const [hs, vs] = shrinkFor(im.width, im.height);
    const alpha = im.hasAlpha();
    const format = im.format;
    if (alpha) im = keep(keep(im.premultiply()).cast(format));
    if (hs !== 1 || vs !== 1) im = keep(im.resize(1 / hs, { vscale: 1 / vs, kernel: 'linear' }));
    if (alpha) im = keep(keep(im.unpremultiply()).cast(format));
    if (resize === 'crop' && (im.width !== size || im.height !== size)) {
      // sharp's centre gravity: (in - out + 1) / 2, integer division.
      im = keep(im.crop(Math.trunc((im.width - size + 1) / 2), Math.trunc((im.height - size + 1) / 2), size, size));
    }
    if (orientation > 1 && orientation <= 8) im = keep(im.autorot());
    im = keep(im.colourspace('srgb'));
    if (im.format !== 'uchar') im = keep(im.cast('uchar'));
    if (im.bands > 3) im = keep(im.extractBand(0, { n: 3 }));
    if (im.bands !== 3 || im.width !== size || im.height !== size) {
      throw new Error(`unexpected decoded shape ${im.width}x${im.height}x${im.bands}`);
    }
    const out = im.writeToMemory();
    return { data: new Uint8Array(out.buffer.slice(out.byteOffset, out.byteOffset + out.byteLength)), width: size, height: size };
  } catch (e) {
    const raw = e instanceof Error ? e.message : String(e);
    const msg = String(raw || 'libvips refused the bytes')
      .split('\n')[0]
      .trim();
    throw new ImageDecodeError(`cannot decode image: ${msg}`);
  } finally {
    for (const im of owned) im.delete();
  }
}
