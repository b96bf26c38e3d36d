import { Readable } from 'node:stream';
import type { ReadableStream as NodeReadableStream } from 'node:stream/web';
import busboy from 'busboy';
import { HttpProblem } from './problem.js';

export interface ImagePart {
  bytes: Uint8Array;
  /** The part's declared content type (informational: the format is read from the bytes). */
  type: string;
}

export interface MultipartLimits {
  /** Most `image` files accepted; one more is a 413. */
  maxFiles: number;
  /** Largest single file in bytes. */
  maxFileBytes: number;
}

/** Parts that are not `image` files (other fields, other files) tolerated beyond the image count. */
const EXTRA_PARTS = 8;

/**
 * Streams a multipart/form-data body through busboy and keeps the `image` files. The limits act
 * while the body streams: the part after the last allowed one stops the parse (a 60,000-part body
 * is refused after a few dozen parts, not after parsing all of them), as does an oversized file.
 */
export function readMultipartImages(req: Request, contentType: string, limits: MultipartLimits): Promise<ImagePart[]> {
  return new Promise<ImagePart[]>((resolve, reject) => {
    let parser: busboy.Busboy;
    try {
      parser = busboy({
        headers: { 'content-type': contentType },
        limits: {
          files: limits.maxFiles + EXTRA_PARTS,
          fields: EXTRA_PARTS,
          parts: limits.maxFiles + EXTRA_PARTS,
          fileSize: limits.maxFileBytes,
          fieldSize: 4096,
          headerPairs: 16,
        },
      });
    } catch {
      reject(new HttpProblem(400, 'malformed multipart body: the content type has no usable boundary'));
      return;
    }
    if (!req.body) {
      reject(new HttpProblem(400, 'no image: the request body is empty'));
      return;
    }
    const source = Readable.fromWeb(req.body as NodeReadableStream<Uint8Array>);
    const images: { chunks: Buffer[]; type: string; done: boolean }[] = [];
    let settled = false;
    const fail = (p: HttpProblem) => {
      if (settled) return;
      settled = true;
      source.unpipe(parser);
      source.destroy();
      parser.removeAllListeners('close');
      parser.on('error', () => {});
      reject(p);
    };
    const most = `at most ${limits.maxFiles} image${limits.maxFiles === 1 ? '' : 's'} per request`;
    const tooMany = () => fail(new HttpProblem(413, `too many images or parts (${most})`));
    parser.on('file', (name, stream, info) => {
      // busboy destroys a file stream that the body ends in the middle of, with an error.
      stream.on('error', () => fail(new HttpProblem(400, 'malformed multipart body: a part is cut short')));
      if (name !== 'image') {
        stream.resume();
        return;
      }
      if (images.length >= limits.maxFiles) {
        stream.resume();
        tooMany();
        return;
      }
      const entry = { chunks: [] as Buffer[], type: info.mimeType, done: false };
      images.push(entry);
      stream.on('data', (d: Buffer) => entry.chunks.push(d));
      stream.on('limit', () => fail(new HttpProblem(413, `an image is larger than the ${limits.maxFileBytes}-byte limit`)));
      stream.on('end', () => {
        entry.done = true;
      });
    });
    parser.on('field', (name) => {
      if (name === 'image') fail(new HttpProblem(400, "the field 'image' must be a file, not text"));
    });
    parser.on('partsLimit', tooMany);
    parser.on('filesLimit', tooMany);
    parser.on('fieldsLimit', tooMany);
    parser.on('error', () => fail(new HttpProblem(400, 'malformed multipart body')));
    source.on('error', () => fail(new HttpProblem(400, 'cannot read the request body')));
    parser.on('close', () => {
      if (settled) return;
      settled = true;
      if (images.length === 0) return reject(new HttpProblem(400, "no image: the multipart form has no field 'image'"));
      const out: ImagePart[] = [];
      for (const img of images) {
        const bytes = Buffer.concat(img.chunks);
        if (!img.done) return reject(new HttpProblem(400, 'malformed multipart body: a part is cut short'));
        if (bytes.byteLength === 0) return reject(new HttpProblem(400, "no image: the file in field 'image' is empty"));
        out.push({ bytes: new Uint8Array(bytes.buffer, bytes.byteOffset, bytes.byteLength), type: img.type });
      }
      resolve(out);
    });
    source.pipe(parser);
  });
}
