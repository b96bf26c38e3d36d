import { IMAGE_MEDIA_TYPES } from './schemas.js';

export type ImageMediaType = (typeof IMAGE_MEDIA_TYPES)[number];

/** Recognises the supported formats by their magic bytes. */
export function sniffImageType(b: Uint8Array): ImageMediaType | undefined {
  if (b.length >= 3 && b[0] === 0xff && b[1] === 0xd8 && b[2] === 0xff) return 'image/jpeg';
  if (b.length >= 8 && b[0] === 0x89 && b[1] === 0x50 && b[2] === 0x4e && b[3] === 0x47) return 'image/png';
  if (b.length >= 6 && b[0] === 0x47 && b[1] === 0x49 && b[2] === 0x46 && b[3] === 0x38) return 'image/gif';
  if (
    b.length >= 12 &&
    b[0] === 0x52 &&
    b[1] === 0x49 &&
    b[2] === 0x46 &&
    b[3] === 0x46 &&
    b[8] === 0x57 &&
    b[9] === 0x45 &&
    b[10] === 0x42 &&
    b[11] === 0x50
  ) {
    return 'image/webp';
  }
  return undefined;
}

/** `image/JPEG; charset=x` -> `image/jpeg`; `image/jpg` and `image/pjpeg` count as JPEG. */
export function baseMediaType(header: string | undefined): string {
  const t = (header ?? '').split(';')[0].trim().toLowerCase();
  return t === 'image/jpg' || t === 'image/pjpeg' ? 'image/jpeg' : t;
}

export type MediaVerdict = { ok: true } | { ok: false; detail: string };

/**
 * Declared image types are accepted as they are (bytes that do not decode get a 422); an absent or
 * generic type (`application/octet-stream`) is accepted only when the bytes look like a supported image.
 */
export function checkMediaType(declared: string, bytes: Uint8Array): MediaVerdict {
  if ((IMAGE_MEDIA_TYPES as readonly string[]).includes(declared)) return { ok: true };
  if (declared === '' || declared === 'application/octet-stream') {
    return sniffImageType(bytes)
      ? { ok: true }
      : { ok: false, detail: `the bytes are not a JPEG, PNG, WebP or GIF image (content type '${declared || 'none'}')` };
  }
  return {
    ok: false,
    detail: `unsupported media type '${declared}': send ${IMAGE_MEDIA_TYPES.join(', ')} or multipart/form-data with a field 'image'`,
  };
}
