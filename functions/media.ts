import { IMAGE_MEDIA_TYPES } from './schemas.js';

export type ImageMediaType = (typeof IMAGE_MEDIA_TYPES)[number];

/** `image/JPEG; charset=x` -> `image/jpeg`; `image/jpg`, `image/pjpeg` count as JPEG, `image/x-ms-bmp` as BMP. */
export function baseMediaType(header: string | undefined): string {
  const t = (header ?? '').split(';')[0].trim().toLowerCase();
  if (t === 'image/jpg' || t === 'image/pjpeg') return 'image/jpeg';
  return t === 'image/x-ms-bmp' || t === 'image/x-bmp' ? 'image/bmp' : t;
}

export type MediaVerdict = { ok: true } | { ok: false; detail: string };

/**
 * The declared type only decides whether we look at the bytes at all: an image type of ours, none,
 * or `application/octet-stream`. Which decoder runs is decided from the bytes alone
 * (core/image-format.ts), so AVIF or SVG declared as image/png are still refused.
 */
export function checkMediaType(declared: string): MediaVerdict {
  if ((IMAGE_MEDIA_TYPES as readonly string[]).includes(declared) || declared === '' || declared === 'application/octet-stream')
    return { ok: true };
  return {
    ok: false,
    detail: `unsupported media type '${declared}': send ${IMAGE_MEDIA_TYPES.join(', ')} or multipart/form-data with a field 'image'`,
  };
}
