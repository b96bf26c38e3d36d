// Hostile images: formats we never decode under every declared type and as multipart parts,
// header-declared giants in every format we do decode, costly PNGs, BMP giants, batch budgets.
// Asserts only what does not depend on timing: the status, that no decoder ran, no tensor growth.
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { initBackend } from '../core/backend.js';
import { decodeCounter, decodeImage, restrictSharpLoaders } from '../core/image.js';
import { checkImageHeader, readImageHeader } from '../core/image-format.js';
import { decodeCounterJs, decodeImageJs, initVips } from '../core/image-js.js';
import { tf } from '../core/tf.js';
import { configFromEnv } from '../functions/config.js';
import { silentLogger } from '../functions/logger.js';
import { createRuntime, type Runtime } from '../functions/runtime.js';
import { IMAGE_MEDIA_TYPES } from '../functions/schemas.js';
import { decodeFiles, listDataset } from '../training/dataset.js';
import {
  bmpFile,
  foreignFormats,
  gifHeaderOnly,
  gifScreenAndFrame,
  jpegHeaderOnly,
  multipartOf,
  png16Interlaced,
  pngHeaderOnly,
  webpHeaderOnly,
} from './helpers/hostile-images.js';
import { makeModelDir } from './helpers/model-dir.js';
import { makePhoto } from './helpers/tiny-model.js';

let dir: string;
let rt: Runtime;
let foreign: Awaited<ReturnType<typeof foreignFormats>>;
const quiet = () => {};

beforeAll(async () => {
  await initBackend('auto', quiet);
  dir = await mkdtemp(path.join(os.tmpdir(), 'edgetune-hostile-'));
  await makeModelDir(dir, { inputSize: 32 });
  foreign = await foreignFormats(); // written before the loaders are blocked (encoders are never blocked anyway)
  restrictSharpLoaders();
  rt = createRuntime(
    configFromEnv({ MODEL_URI: dir, MAX_INPUT_PIXELS: String(1_500_000), MAX_REQUEST_PIXELS: String(2_000_000) }),
    decodeImage,
    { log: silentLogger, backendLog: quiet },
  );
  await rt.ready;
});
afterAll(async () => {
  rt?.holder.dispose();
  if (dir) await rm(dir, { recursive: true, force: true });
});

const post = (body: Uint8Array<ArrayBuffer>, type: string, route = '/v1/classify') =>
  rt.app.request(route, { method: 'POST', body, headers: type ? { 'content-type': type } : {} });

/** Runs `fn` and checks that no image reached sharp or bmp-js and no tensor was left behind. */
async function withoutDecoding(fn: () => Promise<void>): Promise<void> {
  await rt.app.request('/healthz'); // warm
  const decodes = decodeCounter.sharp;
  const tensors = tf.memory().numTensors;
  await fn();
  expect(decodeCounter.sharp).toBe(decodes);
  expect(tf.memory().numTensors).toBe(tensors);
}

const giants: [string, Uint8Array][] = [
  ['JPEG 7071x7071', jpegHeaderOnly(7071, 7071)],
  ['JPEG 65535x65535', jpegHeaderOnly(65535, 65535)],
  ['PNG 100000x100000', pngHeaderOnly(100_000, 100_000)],
  ['PNG 2^31-1 x 1', pngHeaderOnly(0x7fffffff, 1)],
  ['GIF 65535x65535', gifHeaderOnly(65535, 65535)],
  ['GIF 1x1 screen holding a 30000x30000 frame', gifScreenAndFrame(1, 1, 30000, 30000)],
  ['WebP VP8X 16777216x16777216', webpHeaderOnly(16_777_216, 16_777_216, 'VP8X')],
  ['WebP VP8L 16384x16384', webpHeaderOnly(16384, 16384, 'VP8L')],
  ['WebP VP8 16383x16383', webpHeaderOnly(16383, 16383, 'VP8 ')],
  ['BMP 8000x8000 1-bit', bmpFile(8000, 8000, 1)],
  ['BMP 5000x5000 24-bit (header only)', bmpFile(5000, 5000, 24, false)],
];

describe('image headers (core/image-format.ts)', () => {
  it('reads the dimensions sharp reports from real files of every allowed format', async () => {
    const cases = [
      [
        'jpeg',
        await sharp(await makePhoto('jpeg', 123, 45))
          .jpeg({ progressive: true })
          .toBuffer(),
      ],
      ['png', await makePhoto('png', 67, 89)],
      [
        'webp',
        await sharp(await makePhoto('png', 70, 30))
          .webp({ lossless: true })
          .toBuffer(),
      ],
      ['webp', await makePhoto('webp', 51, 77)],
      [
        'webp',
        await sharp(await makePhoto('png', 40, 20))
          .webp({ alphaQuality: 50 })
          .ensureAlpha(0.5)
          .toBuffer(),
      ],
      ['gif', await makePhoto('gif', 33, 21)],
    ] as const;
    for (const [format, bytes] of cases) {
      const meta = await sharp(bytes).metadata();
      expect(readImageHeader(new Uint8Array(bytes))).toMatchObject({ format, width: meta.width, height: meta.height });
    }
    expect(readImageHeader(bmpFile(31, 17, 24))).toMatchObject({ format: 'bmp', width: 31, height: 17 });
  });

  it('reads the declared size of crafted giants in every format and refuses them by the limit', () => {
    for (const [name, bytes] of giants) {
      if (name.includes('header only')) continue;
      const h = readImageHeader(bytes);
      expect(h.width * h.height, name).toBeGreaterThan(16_777_216);
      expect(() => checkImageHeader(bytes, 16_777_216), name).toThrow(expect.objectContaining({ reason: 'too-large' }));
    }
  });

  it('counts an interlaced 16-bit PNG by the frame its decoder holds, and a BMP by its JS decode', () => {
    expect(readImageHeader(pngHeaderOnly(1000, 1000, { depth: 16, colour: 6, interlace: true })).cost).toBe(1000 * 1000 * (8 / 3));
    expect(readImageHeader(pngHeaderOnly(1000, 1000, { depth: 16, colour: 6 })).cost).toBe(1000 * 1000);
    expect(readImageHeader(pngHeaderOnly(1000, 1000, { depth: 8, colour: 2, interlace: true })).cost).toBe(1000 * 1000);
    expect(readImageHeader(bmpFile(100, 100, 24)).cost).toBe(40_000);
  });

  it('tells foreign formats (415) from broken headers of allowed ones (422)', () => {
    for (const [name, bytes] of Object.entries(foreign)) {
      expect(() => readImageHeader(bytes), name).toThrow(expect.objectContaining({ name: 'ImageDecodeError', reason: 'unsupported' }));
    }
    const broken = [new Uint8Array([0xff, 0xd8, 0xff, 0xd9]), pngHeaderOnly(0, 10), new Uint8Array([0x47, 0x49, 0x46, 0x38, 0x39, 0x61])];
    for (const b of broken) expect(() => readImageHeader(b)).toThrow(expect.objectContaining({ reason: 'corrupt' }));
  });
});

describe('both decoders refuse before decoding', () => {
  it('sharp: foreign formats never reach a loader, and the loaders are blocked even if they did', async () => {
    const before = decodeCounter.sharp;
    for (const [name, bytes] of Object.entries(foreign)) {
      await expect(decodeImage(bytes, { size: 32 }), name).rejects.toMatchObject({ reason: 'unsupported' });
      // Directly through sharp, bypassing our header check: blocked by restrictSharpLoaders().
      await expect(sharp(bytes).raw().toBuffer(), name).rejects.toThrow(/unsupported image format/);
    }
    expect(decodeCounter.sharp).toBe(before);
  });

  it('wasm-vips: foreign formats and BMP are refused without calling libvips, whose other loaders are blocked', async () => {
    const vips = await initVips();
    const before = decodeCounterJs.vips;
    for (const [name, bytes] of [...Object.entries(foreign), ['bmp', bmpFile(20, 10, 24)] as const]) {
      await expect(decodeImageJs(bytes, { size: 32 }), name).rejects.toMatchObject({ name: 'ImageDecodeError', reason: 'unsupported' });
    }
    for (const [name, bytes] of giants) {
      await expect(decodeImageJs(bytes, { size: 32, limitInputPixels: 16_777_216 }), name).rejects.toMatchObject({
        name: 'ImageDecodeError',
      });
    }
    expect(decodeCounterJs.vips).toBe(before);
    for (const [name, bytes] of Object.entries(foreign)) expect(() => vips.Image.newFromBuffer(bytes, ''), name).toThrow();
    const ok = await decodeImageJs(await makePhoto('png', 40, 30), { size: 16 });
    expect(ok.data.length).toBe(16 * 16 * 3);
  });

  it('training skips and lists files of foreign formats, whatever their extension', async () => {
    const root = path.join(dir, 'dataset');
    for (const c of ['a', 'b']) await mkdir(path.join(root, c), { recursive: true });
    await writeFile(path.join(root, 'a/real.png'), await makePhoto('png', 40, 30));
    await writeFile(path.join(root, 'a/avif.jpg'), foreign.avif);
    await writeFile(path.join(root, 'b/real.jpg'), await makePhoto('jpeg', 40, 30));
    await writeFile(path.join(root, 'b/svg.png'), foreign.svg);
    const listing = await listDataset(root);
    const { images, skipped } = await decodeFiles(listing.files, { size: 16 });
    expect(images.map((i) => i.file.relPath).sort()).toEqual(['a/real.png', 'b/real.jpg']);
    expect(skipped).toEqual([
      { file: 'a/avif.jpg', reason: expect.stringMatching(/unsupported image format.*AVIF/) },
      { file: 'b/svg.png', reason: expect.stringMatching(/unsupported image format.*SVG/) },
    ]);
  });
});

describe('the API refuses hostile images without decoding them', () => {
  const declared = [...IMAGE_MEDIA_TYPES, 'image/jpg', '', 'application/octet-stream', 'image/avif', 'image/tiff', 'image/svg+xml'];

  it('AVIF, HEIF, TIFF and SVG under every content type: 415', async () => {
    await withoutDecoding(async () => {
      for (const [name, bytes] of Object.entries(foreign)) {
        for (const type of declared) {
          const res = await post(bytes as Uint8Array<ArrayBuffer>, type);
          expect(res.status, `${name} as '${type}'`).toBe(415);
          expect(res.headers.get('content-type')).toBe('application/problem+json');
        }
      }
    });
  });

  it('AVIF, HEIF, TIFF and SVG as multipart parts typed as images, alone or after a good photo: 415 naming the part', async () => {
    const photo = await makePhoto('jpeg', 60, 40);
    await withoutDecoding(async () => {
      for (const [name, bytes] of Object.entries(foreign)) {
        for (const type of ['image/gif', 'image/png', 'image/jpeg', 'application/octet-stream']) {
          const one = multipartOf([{ bytes, type }]);
          expect((await post(one.body as Uint8Array<ArrayBuffer>, one.type)).status, `${name} part '${type}'`).toBe(415);
          const two = multipartOf([
            { bytes: photo, type: 'image/jpeg' },
            { bytes, type },
          ]);
          const res = await post(two.body as Uint8Array<ArrayBuffer>, two.type, '/v1/classify/batch');
          expect(res.status, `${name} in a batch`).toBe(415);
          expect((await res.json()).detail).toMatch(/^image 1: unsupported image format/);
        }
      }
    });
  });

  it('header-declared giants in every format: 413 (422 when the BMP pixel rows are missing)', async () => {
    await withoutDecoding(async () => {
      for (const [name, bytes] of giants) {
        const res = await post(bytes as Uint8Array<ArrayBuffer>, 'image/png');
        expect(res.status, name).toBe(name.includes('header only') ? 422 : 413);
      }
    });
  });

  it('an interlaced 16-bit PNG is counted by its decode cost: refused where the same pixels non-interlaced are served', async () => {
    const interlaced = await png16Interlaced(1000, 1000); // 1 MP of 16-bit RGBA, decodes like 2.7 MP; the limit here is 1.5 MP
    expect(readImageHeader(interlaced)).toMatchObject({ width: 1000, height: 1000, cost: (1_000_000 * 8) / 3 });
    await withoutDecoding(async () => {
      expect((await post(interlaced as Uint8Array<ArrayBuffer>, 'image/png')).status).toBe(413);
    });
    const plain = new Uint8Array(await sharp(interlaced).png({ progressive: false }).toBuffer());
    expect(readImageHeader(plain).cost).toBe(1_000_000);
    expect((await post(plain, 'image/png')).status).toBe(200);
  });

  it('a BMP is checked and decoded when small, refused by its header when large', async () => {
    expect((await post(bmpFile(64, 48, 24) as Uint8Array<ArrayBuffer>, 'image/bmp')).status).toBe(200);
    expect((await post(bmpFile(64, 48, 1) as Uint8Array<ArrayBuffer>, 'application/octet-stream')).status).toBe(200);
    await withoutDecoding(async () => {
      // 700x700 = 0.49 MP, but bmp-js decodes on the event loop: it counts 4x, over the 1.5 MP limit.
      expect((await post(bmpFile(700, 700, 24) as Uint8Array<ArrayBuffer>, 'image/bmp')).status).toBe(413);
      const compressed = bmpFile(10, 10, 8);
      new DataView(compressed.buffer).setUint32(30, 1, true); // BI_RLE8: bmp-js cannot read it
      expect((await post(compressed as Uint8Array<ArrayBuffer>, 'image/bmp')).status).toBe(415);
    });
  });

  it('a batch over the per-request pixel budget is refused before any image decodes', async () => {
    const photo = await makePhoto('png', 900, 900); // 0.81 MP each; the budget here is 2 MP
    const three = multipartOf([0, 1, 2].map(() => ({ bytes: photo, type: 'image/png' })));
    await withoutDecoding(async () => {
      const res = await post(three.body as Uint8Array<ArrayBuffer>, three.type, '/v1/classify/batch');
      expect(res.status).toBe(413);
      expect((await res.json()).detail).toMatch(/per request/);
    });
    const two = multipartOf([0, 1].map(() => ({ bytes: photo, type: 'image/png' })));
    expect((await post(two.body as Uint8Array<ArrayBuffer>, two.type, '/v1/classify/batch')).status).toBe(200);
  });

  it('a corrupt image after a valid header is a 422 whose detail does not echo the decoder', async () => {
    const jpeg = await makePhoto('jpeg', 200, 150);
    const res = await post(jpeg.subarray(0, 400), 'image/jpeg');
    expect(res.status).toBe(422);
    expect((await res.json()).detail).toMatch(/^cannot decode image: the data is corrupt/);
  });
});
