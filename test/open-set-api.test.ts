import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { initBackend } from '../core/backend.js';
import { HEAD } from '../core/classifier.js';
import { createFastForward } from '../core/fast-forward.js';
import { temperedProbabilities } from '../core/head-convention.js';
import { decodeImage } from '../core/image.js';
import { loadModel } from '../core/model-loader.js';
import { decodeOpenSetStats, encodeFloat32, openSetDistance } from '../core/open-set-score.js';
import { tf } from '../core/tf.js';
import { configFromEnv } from '../functions/config.js';
import { memoryLogger } from '../functions/logger.js';
import { createRuntime, type Runtime } from '../functions/runtime.js';
import { makeImage } from './helpers/images.js';
import { makeModelDir } from './helpers/model-dir.js';

// A served model with a temperature and class means: the class means are set to the embedding of
// one photo (`inside`), so that photo is at distance ~0 and a very different photo (`outside`) is not.
const quiet = () => {};
let dirs: string[] = [];
let rt: Runtime;
let plain: Runtime;
let inside: Buffer;
let outside: Buffer;
let insideLogits: number[];
const T = 2.5;

async function embed(dir: string, photo: Buffer) {
  const { model, manifest } = await loadModel(dir);
  const img = await decodeImage(photo, { size: manifest.input.size, resize: manifest.input.resize });
  const ff = createFastForward(model);
  const [pool, logits] = tf.tidy(() =>
    ff.forwardMany(tf.tensor4d(Float32Array.from(img.data), [1, img.height, img.width, 3]), { to: [HEAD.pool, HEAD.logits] }),
  );
  const r = { pool: Float32Array.from(await pool.data()), logits: Array.from(await logits.data()) };
  tf.dispose([pool, logits]);
  ff.dispose();
  model.dispose();
  return r;
}

async function patchManifest(dir: string, patch: (m: Record<string, unknown>) => void) {
  const file = path.join(dir, 'manifest.json');
  const m = JSON.parse(await readFile(file, 'utf8'));
  patch(m);
  await writeFile(file, JSON.stringify(m));
}

const unit = (v: Float32Array) => {
  const n = Math.hypot(...v);
  return Float32Array.from(v, (x) => x / n);
};

beforeAll(async () => {
  await initBackend('auto', quiet);
  const dir = await mkdtemp(path.join(os.tmpdir(), 'edgetune-openset-'));
  const plainDir = await mkdtemp(path.join(os.tmpdir(), 'edgetune-openset-plain-'));
  dirs = [dir, plainDir];
  await makeModelDir(dir, { classes: ['alpaca', 'not_alpaca'], inputSize: 32 });
  await makeModelDir(plainDir, { classes: ['alpaca', 'not_alpaca'], inputSize: 32 });
  inside = await makeImage('png', { width: 48, height: 48, color: [220, 40, 40] });
  outside = await makeImage('png', { width: 48, height: 48, color: [20, 40, 230] });
  const e = await embed(dir, inside);
  insideLogits = e.logits;
  const mean = unit(e.pool);
  const means = new Float32Array(2 * mean.length);
  means.set(mean, 0);
  means.set(mean, mean.length);
  await patchManifest(dir, (m) => {
    m.calibration = {
      temperature: T,
      fittedOn: 'test',
      bins: 10,
      eceBefore: 0.2,
      eceAfter: 0.05,
      nllBefore: 1,
      nllAfter: 0.5,
      reliabilityBefore: [],
      reliabilityAfter: [],
    };
    m.openSet = {
      metric: 'cosine-nearest-class-mean',
      layer: HEAD.pool,
      dim: mean.length,
      means: encodeFloat32(means),
      meansFrom: 'test',
      target: 0.95,
      threshold: 1e-4,
      interval: [5e-5, 2e-4],
      bootstrap: 10,
      n: 1,
      accepted: 1,
      fittedOn: 'test',
    };
  });
  rt = createRuntime(configFromEnv({ MODEL_URI: dir }), decodeImage, { log: memoryLogger(), backendLog: quiet });
  plain = createRuntime(configFromEnv({ MODEL_URI: plainDir }), decodeImage, { log: memoryLogger(), backendLog: quiet });
  await Promise.all([rt.ready, plain.ready]);
}, 120_000);

afterAll(async () => {
  rt?.holder.dispose();
  plain?.holder.dispose();
  for (const d of dirs) await rm(d, { recursive: true, force: true });
});

const post = (app: Runtime['app'], body: Buffer, query = '') =>
  app.request(`/v1/classify${query}`, { method: 'POST', body: new Uint8Array(body), headers: { 'content-type': 'image/png' } });

describe('calibrated probabilities and unknown photos', () => {
  it('serves softmax(z / T) from the logits of the same pass, and accepts the photo at the class mean', async () => {
    const res = await post(rt.app, inside);
    expect(res.status).toBe(200);
    const j = await res.json();
    expect(j.calibrated).toBe(true);
    expect(j.label).not.toBeNull();
    expect(j.reason).toBeUndefined();
    expect(j.openSet.unknown).toBe(false);
    expect(j.openSet.distance).toBeLessThan(1e-4);
    const expected = temperedProbabilities(insideLogits, 2, T);
    const got = Object.fromEntries(j.predictions.map((p: { label: string; score: number }) => [p.label, p.score]));
    expect(got.alpaca).toBeCloseTo(expected[0], 4);
    expect(got.not_alpaca).toBeCloseTo(expected[1], 4);
    const rawRes = await (await post(plain.app, inside)).json();
    expect(rawRes.calibrated).toBe(false);
  });

  it("answers label null with reason 'unknown' and still lists the scores", async () => {
    const j = await (await post(rt.app, outside)).json();
    expect(j.label).toBeNull();
    expect(j.reason).toBe('unknown');
    expect(j.predictions).toHaveLength(2);
    expect(j.score).toBe(j.predictions[0].score);
    expect(j.openSet).toMatchObject({ unknown: true, threshold: 1e-4 });
    expect(j.openSet.distance).toBeGreaterThan(1e-4);
  });

  it('?threshold= overrides the model threshold, and bad values are a 400 problem', async () => {
    const j = await (await post(rt.app, outside, '?threshold=2')).json();
    expect(j.label).toEqual(expect.any(String));
    expect(j.openSet).toMatchObject({ threshold: 2, unknown: false });
    for (const bad of ['abc', '-0.1', '2.5', '', 'Infinity', 'NaN']) {
      const res = await post(rt.app, outside, `?threshold=${bad}`);
      expect(res.status).toBe(400);
      expect((await res.json()).detail).toMatch(/threshold/);
    }
  });

  it('the batch route flags each image on its own', async () => {
    const form = new FormData();
    form.append('image', new Blob([new Uint8Array(inside)], { type: 'image/png' }), 'a.png');
    form.append('image', new Blob([new Uint8Array(outside)], { type: 'image/png' }), 'b.png');
    const res = await rt.app.request('/v1/classify/batch', { method: 'POST', body: form });
    expect(res.status).toBe(200);
    const { results } = await res.json();
    expect(results.map((r: { label: string | null }) => r.label === null)).toEqual([false, true]);
    expect(results[1].reason).toBe('unknown');
  });

  it('a model without the fields serves as before; ?threshold= on it is a 400', async () => {
    const j = await (await post(plain.app, outside)).json();
    expect(j.label).toEqual(expect.any(String));
    expect(j).not.toHaveProperty('openSet');
    expect(j).not.toHaveProperty('reason');
    const res = await post(plain.app, outside, '?threshold=0.5');
    expect(res.status).toBe(400);
    expect((await res.json()).detail).toMatch(/no open-set statistics/);
  });

  it('GET /v1/model and the OpenAPI document show them', async () => {
    const info = await (await rt.app.request('/v1/model')).json();
    expect(info.calibration).toMatchObject({ temperature: T, fittedOn: 'test' });
    expect(info.openSet).toMatchObject({ threshold: 1e-4, target: 0.95 });
    expect(info.openSet).not.toHaveProperty('means');
    const doc = await (await rt.app.request('/openapi.json')).json();
    const params = doc.paths['/v1/classify'].post.parameters.map((p: { name: string }) => p.name);
    expect(params).toContain('threshold');
    expect(JSON.stringify(doc.components.schemas.ClassifyResult)).toMatch(/unknown/);
  });

  it('malformed class means fail the load with a clear message (nothing served from them)', async () => {
    const dir = await mkdtemp(path.join(os.tmpdir(), 'edgetune-openset-bad-'));
    dirs.push(dir);
    await makeModelDir(dir, { classes: ['a', 'b'], inputSize: 32 });
    await patchManifest(dir, (m) => {
      m.openSet = {
        metric: 'cosine-nearest-class-mean',
        layer: HEAD.pool,
        dim: 1280,
        means: encodeFloat32(new Float32Array(7)),
        meansFrom: 'x',
        target: 0.95,
        threshold: 0.1,
        interval: [0.1, 0.1],
        bootstrap: 1,
        n: 1,
        accepted: 1,
        fittedOn: 'x',
      };
    });
    const log = memoryLogger();
    const bad = createRuntime(configFromEnv({ MODEL_URI: dir }), decodeImage, { log, backendLog: quiet });
    await bad.ready;
    const r = await bad.app.request('/readyz');
    expect(r.status).toBe(503);
    expect(JSON.stringify(log.entries)).toMatch(/manifest.openSet: open-set statistics/);
    bad.holder.dispose();
  });
  it('serves the Mahalanobis score: the distance the shared scorer gives, unknown above the threshold', async () => {
    const dir = await mkdtemp(path.join(os.tmpdir(), 'edgetune-openset-maha-'));
    dirs.push(dir);
    await makeModelDir(dir, { classes: ['alpaca', 'not_alpaca'], inputSize: 32 });
    const a = await embed(dir, inside);
    const b = await embed(dir, outside);
    const dim = a.pool.length;
    const mean = unit(a.pool);
    const means = new Float32Array(2 * dim);
    means.set(mean, 0);
    means.set(mean, dim);
    const basis = new Float32Array(2 * dim);
    basis[0] = 1;
    basis[dim + 1] = 1;
    const stored = {
      metric: 'mahalanobis-shared-lowrank' as const,
      dim,
      means: encodeFloat32(means),
      rank: 2,
      basis: encodeFloat32(basis),
      variances: encodeFloat32(Float32Array.from([0.01, 0.005])),
      residual: 1e-4,
    };
    const expected = openSetDistance(b.pool, decodeOpenSetStats(stored, 2)).distance;
    expect(expected).toBeGreaterThan(1e-3);
    await patchManifest(dir, (m) => {
      m.openSet = {
        ...stored,
        shrinkage: 0.1,
        layer: HEAD.pool,
        meansFrom: 'test',
        target: 0.95,
        threshold: expected / 2,
        interval: [expected / 4, expected],
        bootstrap: 10,
        n: 1,
        accepted: 1,
        fittedOn: 'test',
      };
    });
    const maha = createRuntime(configFromEnv({ MODEL_URI: dir }), decodeImage, { log: memoryLogger(), backendLog: quiet });
    await maha.ready;
    try {
      const inJ = await (await post(maha.app, inside)).json();
      expect(inJ.openSet.unknown).toBe(false);
      expect(inJ.openSet.distance).toBeLessThan(1e-4);
      const outJ = await (await post(maha.app, outside)).json();
      expect(outJ.label).toBeNull();
      expect(outJ.reason).toBe('unknown');
      expect(outJ.openSet.distance).toBeCloseTo(expected, 4);
    } finally {
      maha.holder.dispose();
    }
  });
});
