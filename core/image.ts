import bmp from 'bmp-js';
import { embedsSrgbProfile } from './icc-profile.js';
import { checkImageHeader, ImageDecodeError, ImageTooLargeError, UnsupportedImageError } from './image-format.js';
import { sharp } from './sharp.js';

export { ImageDecodeError, ImageTooLargeError, UnsupportedImageError };

/** Decoded, oriented, resized RGB pixels, row-major HWC, values 0..255. */
export interface RgbImage {
  data: Uint8Array;
  width: number;
  height: number;
}

export type ResizeMode = 'stretch' | 'crop';

export interface PreprocessOptions {
  /** Square model input size in pixels. */
  size: number;
  /** `stretch` resizes the whole image like Keras (default); `crop` centre-crops to square first. */
  resize?: ResizeMode;
  /** Refuse images with more pixels than this (decompression bombs). */
  limitInputPixels?: number;
  /** Convert an embedded sRGB profile too, as before core/icc-profile.ts (benchmarks and tests compare). */
  convertEveryProfile?: boolean;
}

export const IMAGE_EXTENSIONS = ['.jpg', '.jpeg', '.png', '.webp', '.gif', '.bmp'] as const;
export const DEFAULT_LIMIT_INPUT_PIXELS = 50_000_000;

/**
 * The one preprocessing shared by training and serving: decode (first frame of animations),
 * apply EXIF orientation, convert greyscale/CMYK/alpha to sRGB RGB, then bilinear resize to
 * size x size. Scaling to [-1, 1] happens inside the model (its Rescaling layer).
 */
export async function decodeImage(bytes: Uint8Array, opts: PreprocessOptions): Promise<RgbImage> {
  const { size, resize = 'stretch', limitInputPixels = DEFAULT_LIMIT_INPUT_PIXELS } = opts;
  // The allowlist and the size come from the header, before libvips or bmp-js sees the bytes.
  const header = checkImageHeader(bytes, limitInputPixels);
  decodeCounter.sharp++;
  try {
    // An embedded sRGB profile would be converted to sRGB pixel by pixel for nothing (core/icc-profile.ts).
    const ignoreIcc = !opts.convertEveryProfile && embedsSrgbProfile(bytes, header.format);
    const input =
      header.format === 'bmp'
        ? bmpToSharp(bytes, limitInputPixels)
        : sharp(bytes, { limitInputPixels, failOn: 'error', pages: 1, ignoreIcc });
    const { data, info } = await input
      .rotate()
      .toColourspace('srgb')
      .removeAlpha()
      .resize(size, size, { fit: resize === 'crop' ? 'cover' : 'fill', kernel: 'linear' })
      .raw()
      .toBuffer({ resolveWithObject: true });
    if (info.channels !== 3 || info.width !== size || info.height !== size) {
      throw new Error(`unexpected decoded shape ${info.width}x${info.height}x${info.channels}`);
    }
    return { data: new Uint8Array(data.buffer, data.byteOffset, data.byteLength), width: size, height: size };
  } catch (e) {
    throw new ImageDecodeError(`cannot decode image: ${(e as Error).message}`);
  }
}

/** How many images reached a decoder (tests check that a refused format never does). */
export const decodeCounter = { sharp: 0 };

const ALLOWED_LOADERS = ['Jpeg', 'Png', 'Webp', 'Nsgif'].flatMap((f) => [`VipsForeignLoad${f}Buffer`, `VipsForeignLoad${f}File`]);

/**
 * Blocks every libvips loader in this process except JPEG, PNG, WebP and GIF (and SVG when asked:
 * the training report renders its charts from SVG), so a format that got past the header check
 * still cannot reach AVIF/HEIF, TIFF, PDF, librsvg or magick code. Process-wide; raw pixel input
 * and the encoders are unaffected.
 */
export function restrictSharpLoaders(opts: { svg?: boolean } = {}): void {
  sharp.block({ operation: ['VipsForeignLoad'] });
  sharp.unblock({ operation: [...ALLOWED_LOADERS, ...(opts.svg ? ['VipsForeignLoadSvgBuffer'] : [])] });
}

/** libvips (sharp) does not read BMP: decode it in JS, then feed sharp the raw pixels. */
function bmpToSharp(bytes: Uint8Array, limitInputPixels: number) {
  const img = bmp.decode(Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength));
  if (img.width * img.height > limitInputPixels) throw new Error('input image exceeds pixel limit');
  const rgb = Buffer.alloc(img.width * img.height * 3);
  // bmp-js returns ABGR.
  for (let i = 0, o = 0; o < rgb.length; i += 4, o += 3) {
    rgb[o] = img.data[i + 3];
    rgb[o + 1] = img.data[i + 2];
    rgb[o + 2] = img.data[i + 1];
  }
  return sharp(rgb, { raw: { width: img.width, height: img.height, channels: 3 } });
}
