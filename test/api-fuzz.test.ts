import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { initBackend } from '../core/backend.js';
import { decodeImage } from '../core/image.js';
import { tf } from '../core/tf.js';
import { configFromEnv } from '../functions/config.js';
import { silentLogger } from '../functions/logger.js';
import { createRuntime, type Runtime } from '../functions/runtime.js';
import { makeModelDir } from './helpers/model-dir.js';
import { makePhoto } from './helpers/tiny-model.js';

let dir: string;
let rt: Runtime;
let seeds: Uint8Array<ArrayBuffer>[];
const quiet = () => {};

beforeAll(async () => {
  await initBackend('auto', quiet);
  dir = await mkdtemp(path.join(os.tmpdir(), 'edgetune-fuzz-'));
  await makeModelDir(dir, { inputSize: 32 });
  rt = createRuntime(configFromEnv({ MODEL_URI: dir, MAX_BODY_BYTES: String(64 * 1024) }), decodeImage, {
    log: silentLogger,
    backendLog: quiet,
  });
  await rt.ready;
  seeds = await Promise.all([
    makePhoto('jpeg', 80, 60, 1),
    makePhoto('png', 40, 30, 2, { alpha: true }),
    makePhoto('webp', 50, 50, 3),
    makePhoto('gif', 30, 40, 4),
    makePhoto('jpeg', 64, 48, 5, { orientation: 8 }),
  ]);
});
afterAll(async () => {
  rt?.holder.dispose();
  if (dir) await rm(dir, { recursive: true, force: true });
});

const contentTypes = [
  'image/jpeg',
  'image/png',
  'image/webp',
  'image/gif',
  'application/octet-stream',
  'text/plain',
  'image/tiff',
  '',
  'image/jpeg; charset=binary',
];

/** Random bytes, or a real image cut short, with a few bytes flipped, under a random content type. */
const bodyArb = fc.oneof(
  fc.record({ kind: fc.constant('random' as const), bytes: fc.uint8Array({ maxLength: 2048 }), type: fc.constantFrom(...contentTypes) }),
  fc.record({
    kind: fc.constant('mangled' as const),
    seed: fc.nat({ max: 4 }),
    cut: fc.double({ min: 0.02, max: 1, noNaN: true }),
    flips: fc.array(fc.tuple(fc.nat(), fc.nat({ max: 255 })), { maxLength: 4 }),
    type: fc.constantFrom(...contentTypes),
    multipart: fc.boolean(),
  }),
);

describe('fuzzing POST /v1/classify', () => {
  it('answers 4xx (or 200 for images that still decode) to 500 random and truncated bodies, never 5xx, without leaking tensors', async () => {
    // One request first so lazily created kernels and caches do not count as growth.
    await rt.app.request('/v1/classify', { method: 'POST', body: seeds[0], headers: { 'content-type': 'image/jpeg' } });
    const before = tf.memory().numTensors;
    const statuses = new Map<number, number>();
    let runs = 0;
    await fc.assert(
      fc.asyncProperty(bodyArb, async (b) => {
        runs++;
        let bytes: Uint8Array<ArrayBuffer>;
        if (b.kind === 'random') bytes = new Uint8Array(b.bytes);
        else {
          const src = seeds[b.seed];
          bytes = Uint8Array.from(src.subarray(0, Math.floor(src.length * b.cut)));
          for (const [pos, val] of b.flips) if (bytes.length > 0) bytes[pos % bytes.length] = val;
        }
        let init: RequestInit;
        if (b.kind === 'mangled' && b.multipart) {
          const form = new FormData();
          form.append('image', new Blob([bytes], { type: b.type }));
          init = { method: 'POST', body: form };
        } else {
          init = { method: 'POST', body: bytes, headers: b.type ? { 'content-type': b.type } : {} };
        }
        const res = await rt.app.request('/v1/classify', init);
        statuses.set(res.status, (statuses.get(res.status) ?? 0) + 1);
        if (res.status !== 200) {
          expect(res.headers.get('content-type')).toBe('application/problem+json');
          expect(res.status).toBeGreaterThanOrEqual(400);
          expect(res.status).toBeLessThan(500);
        } else {
          const j = await res.json();
          expect(j.predictions.reduce((s: number, p: { score: number }) => s + p.score, 0)).toBeCloseTo(1, 5);
        }
        if (b.kind === 'random' && !['image/jpeg', 'image/png', 'image/webp', 'image/gif', 'image/jpeg; charset=binary'].includes(b.type)) {
          expect([400, 415]).toContain(res.status);
        }
        await res.arrayBuffer().catch(() => {});
      }),
      { numRuns: 500, seed: 20261127 },
    );
    expect(runs).toBe(500);
    expect(tf.memory().numTensors).toBe(before);
    // Both paths were exercised: rejections and images that survived truncation.
    expect([...statuses.keys()].some((s) => s >= 400)).toBe(true);
    console.log('fuzz status counts', Object.fromEntries(statuses));
  });
});
