// npm run bench:fuzz [-- --cases 10000 --seed 1]
// Sends generated bad inputs to the classify API in process (app.request, the same Hono app as
// Lambda and the Node server): mutated real photos (../shared alpaca, re-encoded to every allowed
// format), truncated files, random bytes behind real magic numbers, polyglots, as raw bodies under
// random content types and as multipart parts. Prints the count per status, 5xx, crashes (errors
// escaping the app, uncaught exceptions, unhandled rejections), tensor growth, p99 time, peak RSS.
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import sharp from 'sharp';
import { initBackend } from '../core/backend.js';
import * as image from '../core/image.js';
import { tf } from '../core/tf.js';
import { configFromEnv } from '../functions/config.js';
import { silentLogger } from '../functions/logger.js';
import { createRuntime } from '../functions/runtime.js';
import { bmpFile, concat, foreignFormats, jpegHeaderOnly, multipartOf, pngHeaderOnly } from '../test/helpers/hostile-images.js';
import { makeModelDir, rng } from '../test/helpers/model-dir.js';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const SHARED = process.env.EDGETUNE_SHARED_DIR ?? path.join(ROOT, '../shared');
const arg = (name: string, def: number) => {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 ? Number(process.argv[i + 1]) : def;
};
const CASES = arg('cases', 10_000);
const SEED = arg('seed', 1);

let crashes = 0;
process.on('uncaughtException', () => crashes++);
process.on('unhandledRejection', () => crashes++);

const rand = rng(SEED);
const int = (n: number) => Math.floor(rand() * n);
const pick = <T>(xs: readonly T[]): T => xs[int(xs.length)];
const enc = (s: string) => new TextEncoder().encode(s);
const randomBytes = (n: number) => Uint8Array.from({ length: n }, () => int(256));

async function seedImages(): Promise<{ photos: Uint8Array[]; source: string }> {
  const dir = path.join(SHARED, 'datasets/alpaca/alpaca');
  const originals: Uint8Array[] = [];
  let source = 'synthetic (../shared not found)';
  if (existsSync(dir)) {
    for (const f of readdirSync(dir).sort().slice(0, 8)) originals.push(new Uint8Array(readFileSync(path.join(dir, f))));
    source = `${originals.length} alpaca photos from ${dir}, re-encoded`;
  } else {
    originals.push(
      new Uint8Array(
        await sharp({ create: { width: 320, height: 240, channels: 3, background: '#a86' } })
          .jpeg()
          .toBuffer(),
      ),
    );
  }
  const photos: Uint8Array[] = [];
  for (const o of originals) {
    // Mutating a 250 KB photo 10,000 times would mostly time the JPEG decoder: keep them small.
    const small = sharp(o).resize(160, 120, { fit: 'inside' });
    photos.push(new Uint8Array(await small.clone().jpeg({ quality: 80 }).toBuffer()));
    photos.push(new Uint8Array(await small.clone().jpeg({ progressive: true }).toBuffer()));
    photos.push(new Uint8Array(await small.clone().png().toBuffer()));
    photos.push(new Uint8Array(await small.clone().png({ progressive: true }).toBuffer()));
    photos.push(new Uint8Array(await small.clone().webp().toBuffer()));
    photos.push(new Uint8Array(await small.clone().webp({ lossless: true }).toBuffer()));
    photos.push(new Uint8Array(await small.clone().gif().toBuffer()));
  }
  photos.push(bmpFile(120, 90, 24), bmpFile(64, 64, 8), bmpFile(100, 50, 1));
  return { photos, source };
}

type Kind = 'mutated' | 'truncated' | 'random' | 'polyglot' | 'giant-header';

function mutate(b: Uint8Array): Uint8Array {
  const out = b.slice();
  const op = int(5);
  if (op === 0) for (let i = 0, n = 1 + int(20); i < n; i++) out[int(out.length)] = int(256);
  else if (op === 1)
    for (let i = 0, n = 1 + int(8); i < n; i++) out[int(Math.min(64, out.length))] = int(256); // the header
  else if (op === 2) {
    const at = int(out.length);
    out.fill(int(256), at, at + int(512));
  } else if (op === 3) {
    const at = int(out.length);
    return concat(out.subarray(0, at), randomBytes(int(256)), out.subarray(at));
  } else {
    const a = int(out.length);
    const c = int(out.length);
    out.copyWithin(a, c, c + int(1024));
  }
  return out;
}

function polyglot(photos: Uint8Array[], foreign: Record<string, Uint8Array>): Uint8Array {
  const p = pick(photos);
  switch (int(7)) {
    case 0:
      return concat(p, enc('<html><script>alert(1)</script></html>'));
    case 1:
      return concat(enc('GIF89a/*'), randomBytes(8), enc('*/=alert(1)//'), randomBytes(int(64)));
    case 2:
      return concat(p, pick(Object.values(foreign)));
    case 3: // a foreign file behind an allowed magic number
      return concat(p.subarray(0, 4 + int(16)), pick(Object.values(foreign)));
    case 4: // JPEG with an ftyp box in an APP segment
      return concat(new Uint8Array([0xff, 0xd8, 0xff, 0xe1, 0, 24]), foreign.avif.subarray(0, 22), p.subarray(2));
    case 5:
      return concat(enc('BM'), p);
    default:
      return concat(
        enc('<?xml version="1.0"?><svg xmlns="http://www.w3.org/2000/svg"><image href="data:image/png;base64,'),
        enc(Buffer.from(p).toString('base64')),
        enc('"/></svg>'),
      );
  }
}

function giantHeader(): Uint8Array {
  const big = () => 5000 + int(60_000);
  switch (int(3)) {
    case 0:
      return jpegHeaderOnly(big(), big());
    case 1:
      return pngHeaderOnly(big(), big(), { depth: pick([8, 16]), colour: pick([2, 6]), interlace: rand() < 0.5 });
    default:
      return bmpFile(big(), big(), pick([1, 8, 24]), false);
  }
}

const TYPES = [
  'image/jpeg',
  'image/png',
  'image/webp',
  'image/gif',
  'image/bmp',
  '',
  'application/octet-stream',
  'image/avif',
  'text/plain',
  'image/svg+xml',
];

async function main(): Promise<void> {
  await initBackend('auto', () => {});
  // Optional, so the same bench runs against a checkout from before the loaders could be blocked.
  (image as { restrictSharpLoaders?: () => void }).restrictSharpLoaders?.();
  const dir = await mkdtemp(path.join(os.tmpdir(), 'edgetune-fuzz-'));
  try {
    await makeModelDir(dir, { inputSize: 32 });
    const rt = createRuntime(configFromEnv({ MODEL_URI: dir, MAX_BODY_BYTES: String(2 * 1024 * 1024) }), image.decodeImage, {
      log: silentLogger,
      backendLog: () => {},
    });
    await rt.ready;
    const { photos, source } = await seedImages();
    const foreign = await foreignFormats(96, 64);
    const generate = (): { kind: Kind; bytes: Uint8Array } => {
      const r = rand();
      if (r < 0.4) return { kind: 'mutated', bytes: mutate(pick(photos)) };
      if (r < 0.6) {
        const p = pick(photos);
        return { kind: 'truncated', bytes: p.subarray(0, int(p.length)) };
      }
      if (r < 0.75) {
        const magic = pick([
          [0xff, 0xd8, 0xff],
          [0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a],
          [...enc('GIF89a')],
          [...enc('RIFF\0\0\0\0WEBPVP8 ')],
          [...enc('BM')],
          [],
        ]);
        return { kind: 'random', bytes: concat(new Uint8Array(magic), randomBytes(int(4096))) };
      }
      if (r < 0.92) return { kind: 'polyglot', bytes: polyglot(photos, foreign) };
      return { kind: 'giant-header', bytes: giantHeader() };
    };

    // Warm up (first decode, first forward pass), then measure from here.
    await rt.app.request('/v1/classify', {
      method: 'POST',
      body: photos[0] as Uint8Array<ArrayBuffer>,
      headers: { 'content-type': 'image/jpeg' },
    });
    const tensors0 = tf.memory().numTensors;
    const byStatus = new Map<number, number>();
    const byKind = new Map<string, Map<number, number>>();
    const times: number[] = [];
    let escaped = 0;
    const t0 = performance.now();
    for (let i = 0; i < CASES; i++) {
      const c = generate();
      const mode = rand();
      let req: Response | Promise<Response>;
      if (mode < 0.7) {
        const type = pick(TYPES);
        req = rt.app.request('/v1/classify', {
          method: 'POST',
          body: c.bytes as Uint8Array<ArrayBuffer>,
          headers: type ? { 'content-type': type } : {},
        });
      } else {
        const n = 1 + int(3);
        const parts = Array.from({ length: n }, (_, j) => ({
          bytes: j === 0 ? c.bytes : rand() < 0.5 ? pick(photos) : generate().bytes,
          type: pick(TYPES) || 'image/png',
        }));
        const form = multipartOf(parts);
        const body = rand() < 0.05 ? form.body.subarray(0, int(form.body.length)) : form.body;
        req = rt.app.request(n > 1 ? '/v1/classify/batch' : '/v1/classify', {
          method: 'POST',
          body: body as Uint8Array<ArrayBuffer>,
          headers: { 'content-type': rand() < 0.03 ? 'multipart/form-data' : form.type },
        });
      }
      const ts = performance.now();
      let status: number;
      try {
        const res = await req;
        await res.arrayBuffer();
        status = res.status;
      } catch {
        escaped++;
        status = -1;
      }
      times.push(performance.now() - ts);
      byStatus.set(status, (byStatus.get(status) ?? 0) + 1);
      const k = byKind.get(c.kind) ?? new Map<number, number>();
      k.set(status, (k.get(status) ?? 0) + 1);
      byKind.set(c.kind, k);
    }
    const wall = (performance.now() - t0) / 1000;
    const growth = tf.memory().numTensors - tensors0;
    times.sort((a, b) => a - b);
    const q = (p: number) => times[Math.min(times.length - 1, Math.floor(p * times.length))];
    const fivexx = [...byStatus].filter(([s]) => s >= 500).reduce((n, [, v]) => n + v, 0);
    const fmt = (m: Map<number, number>) =>
      [...m]
        .sort((a, b) => a[0] - b[0])
        .map(([s, n]) => `${s === -1 ? 'escaped' : s}: ${n}`)
        .join(', ');
    console.log(
      `bench:fuzz: ${CASES} generated bad inputs (seed ${SEED}), seeds: ${source}; ${os.cpus().length} cores, Node ${process.version}`,
    );
    console.log(`  by status   ${fmt(byStatus)}`);
    for (const [k, m] of byKind) console.log(`  ${k.padEnd(12)}${fmt(m)}`);
    console.log(`  5xx         ${fivexx}`);
    console.log(`  crashes     ${crashes + escaped} (errors escaping the app ${escaped}, uncaught/unhandled ${crashes})`);
    console.log(`  tensors     ${growth} growth (${tf.memory().numTensors} now)`);
    console.log(
      `  time        p50 ${q(0.5).toFixed(1)} ms, p99 ${q(0.99).toFixed(1)} ms, max ${times[times.length - 1].toFixed(1)} ms; ${wall.toFixed(1)} s in all`,
    );
    console.log(`  peak RSS    ${(process.resourceUsage().maxRSS / 1024).toFixed(0)} MB`);
    rt.holder.dispose();
    if (fivexx > 0 || crashes + escaped > 0 || growth !== 0) process.exitCode = 1;
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

await main();
