import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { initBackend } from '../core/backend.js';
import { decodeImage } from '../core/image.js';
import { configFromEnv } from '../functions/config.js';
import { memoryLogger } from '../functions/logger.js';
import { createRuntime, type Runtime } from '../functions/runtime.js';
import { makeModelDir } from './helpers/model-dir.js';
import { makePhoto } from './helpers/tiny-model.js';

let dir: string;
let rt: Runtime;
const log = memoryLogger();
const quiet = () => {};

beforeAll(async () => {
  await initBackend('auto', quiet);
  dir = await mkdtemp(path.join(os.tmpdir(), 'edgetune-api-'));
  await makeModelDir(dir, { classes: ['alpaca', 'not_alpaca'], inputSize: 32 });
  rt = createRuntime(configFromEnv({ MODEL_URI: dir, MAX_BODY_BYTES: String(200_000) }), decodeImage, { log, backendLog: quiet });
  await rt.ready;
});

afterAll(async () => {
  rt?.holder.dispose();
  if (dir) await rm(dir, { recursive: true, force: true });
});

const post = (body: BodyInit, type?: string, query = '', headers: Record<string, string> = {}) =>
  rt.app.request(`/v1/classify${query}`, { method: 'POST', body, headers: { ...(type ? { 'content-type': type } : {}), ...headers } });

async function expectProblem(res: Response, status: number, detail?: RegExp) {
  expect(res.status).toBe(status);
  expect(res.headers.get('content-type')).toBe('application/problem+json');
  expect(res.headers.get('x-request-id')).toBeTruthy();
  const j = await res.json();
  expect(j).toMatchObject({
    status,
    type: expect.stringMatching(/^urn:edgetune:problem:/),
    title: expect.any(String),
    detail: expect.any(String),
  });
  if (detail) expect(j.detail).toMatch(detail);
  return j;
}

describe('classify API routes (app.request)', () => {
  it('health, readiness and model metadata', async () => {
    const h = await rt.app.request('/healthz');
    expect(h.status).toBe(200);
    expect(await h.json()).toMatchObject({ status: 'ok' });
    const r = await rt.app.request('/readyz');
    expect(r.status).toBe(200);
    const ready = await r.json();
    expect(ready).toMatchObject({ ready: true, model: { name: 'test-model', engine: 'fused' } });
    expect(ready.backend).toMatch(/wasm|cpu|tensorflow/);
    const m = await rt.app.request('/v1/model');
    expect(m.status).toBe(200);
    const info = await m.json();
    expect(info).toMatchObject({
      name: 'test-model',
      classes: ['alpaca', 'not_alpaca'],
      inputSize: 32,
      backbone: { arch: 'mobilenet_v2' },
    });
    expect(info.version).toBe(ready.model.version);
    expect(info).not.toHaveProperty('files');
    expect(info).not.toHaveProperty('dataset');
  });

  for (const format of ['jpeg', 'png', 'webp', 'gif'] as const) {
    it(`classifies a raw ${format} body`, async () => {
      const res = await post(await makePhoto(format, 120, 80), `image/${format}`);
      expect(res.status).toBe(200);
      const j = await res.json();
      expect(j.predictions).toHaveLength(2);
      expect(j.predictions.map((p: { label: string }) => p.label).sort()).toEqual(['alpaca', 'not_alpaca']);
      expect(j.predictions[0].score).toBeGreaterThanOrEqual(j.predictions[1].score);
      expect(j.predictions[0].score + j.predictions[1].score).toBeCloseTo(1, 5);
      expect(j.label).toBe(j.predictions[0].label);
      expect(j.score).toBe(j.predictions[0].score);
      expect(j.model.version).toMatch(/\S/);
      expect(j.timings.totalMs).toBeGreaterThanOrEqual(j.timings.decodeMs + j.timings.inferenceMs - 0.1);
    });
  }

  it('accepts a multipart field, an EXIF-rotated alpha PNG, octet-stream with sniffing, and ?top=1', async () => {
    const form = new FormData();
    form.append('image', new Blob([await makePhoto('jpeg', 64, 64, 3, { orientation: 6 })], { type: 'image/jpeg' }), 'x.jpg');
    const a = await rt.app.request('/v1/classify?top=1', { method: 'POST', body: form });
    expect(a.status).toBe(200);
    const j = await a.json();
    expect(j.predictions).toHaveLength(1);
    const b = await post(await makePhoto('png', 50, 70, 2, { alpha: true }), 'application/octet-stream');
    expect(b.status).toBe(200);
    const c = await post(await makePhoto('webp'), undefined);
    expect(c.status).toBe(200);
  });

  it('classifies a multipart batch in one forward pass, same answers as one by one', async () => {
    const images = await Promise.all([1, 2, 3].map((s) => makePhoto('jpeg', 90, 60, s)));
    const form = new FormData();
    for (const img of images) form.append('image', new Blob([img], { type: 'image/jpeg' }));
    const res = await rt.app.request('/v1/classify/batch', { method: 'POST', body: form });
    expect(res.status).toBe(200);
    const j = await res.json();
    expect(j.results).toHaveLength(3);
    for (const [i, img] of images.entries()) {
      const single = await (await post(img, 'image/jpeg')).json();
      expect(j.results[i].label).toBe(single.label);
      expect(j.results[i].score).toBeCloseTo(single.score, 4);
    }
  });

  it('answers every error as application/problem+json with the right status', async () => {
    await expectProblem(await post(new Uint8Array(0), 'image/jpeg'), 400, /empty/);
    const noField = new FormData();
    noField.append('other', 'x');
    await expectProblem(await rt.app.request('/v1/classify', { method: 'POST', body: noField }), 400, /field 'image'/);
    const textField = new FormData();
    textField.append('image', 'not a file');
    await expectProblem(await rt.app.request('/v1/classify', { method: 'POST', body: textField }), 400, /file/);
    await expectProblem(await post(new Uint8Array(300_000), 'image/jpeg'), 413, /limit/);
    await expectProblem(await post('hello', 'text/plain'), 415, /text\/plain/);
    await expectProblem(await post(new Uint8Array([1, 2, 3, 4]), 'application/octet-stream'), 415);
    await expectProblem(await post(new Uint8Array([1, 2, 3, 4]), 'image/tiff'), 415);
    await expectProblem(await post(new Uint8Array([0xff, 0xd8, 0xff, 0, 1, 2, 3]), 'image/jpeg'), 422, /decode/);
    const jpeg = await makePhoto('jpeg', 200, 150);
    await expectProblem(await post(jpeg.subarray(0, 200), 'image/jpeg'), 422);
    await expectProblem(await post(jpeg, 'image/jpeg', '?top=zero'), 400, /top/);
    await expectProblem(await post(jpeg, 'image/jpeg', '?top=0'), 400, /top/);
    await expectProblem(await rt.app.request('/nope'), 404);
    await expectProblem(
      await rt.app.request('/v1/classify/batch', { method: 'POST', body: jpeg, headers: { 'content-type': 'image/jpeg' } }),
      415,
    );
    const many = new FormData();
    for (let i = 0; i < 17; i++) many.append('image', new Blob([new Uint8Array(10)], { type: 'image/jpeg' }));
    await expectProblem(await rt.app.request('/v1/classify/batch', { method: 'POST', body: many }), 413, /at most 16/);
    const badOne = new FormData();
    badOne.append('image', new Blob([jpeg], { type: 'image/jpeg' }));
    badOne.append('image', new Blob([new Uint8Array([9, 9, 9])], { type: 'image/png' }));
    // Bytes of no allowlisted format are refused by their magic bytes, whatever the part's declared type.
    await expectProblem(await rt.app.request('/v1/classify/batch', { method: 'POST', body: badOne }), 415, /^image 1:/);
    const malformed = await rt.app.request('/v1/classify', {
      method: 'POST',
      body: '--zzz\r\nbroken',
      headers: { 'content-type': 'multipart/form-data; boundary=zzz' },
    });
    await expectProblem(malformed, 400, /multipart/);
  });

  it('keeps a valid client request id, replaces an invalid one, and logs JSON lines without image bytes', async () => {
    const res = await post(await makePhoto('png'), 'image/png', '', { 'x-request-id': 'client-abc_123' });
    expect(res.headers.get('x-request-id')).toBe('client-abc_123');
    const bad = await rt.app.request('/healthz', { headers: { 'x-request-id': 'bad id with spaces' } });
    expect(bad.headers.get('x-request-id')).toMatch(/^[0-9a-f-]{36}$/);
    const line = log.entries.find((e) => e.requestId === 'client-abc_123' && e.msg === 'request');
    expect(line).toMatchObject({
      level: 'info',
      method: 'POST',
      path: '/v1/classify',
      status: 200,
      images: 1,
      labels: [expect.any(String)],
    });
    expect(typeof line?.decodeMs).toBe('number');
    for (const e of log.entries) expect(JSON.stringify(e).length).toBeLessThan(2000);
  });

  it('serves OpenAPI 3.1 generated from the route schemas, the reference page, and the upload page', async () => {
    const res = await rt.app.request('/openapi.json');
    expect(res.status).toBe(200);
    const doc = await res.json();
    expect(doc.openapi).toBe('3.1.0');
    for (const p of ['/v1/classify', '/v1/classify/batch', '/v1/model', '/healthz', '/readyz']) expect(doc.paths).toHaveProperty(p);
    const body = doc.paths['/v1/classify'].post.requestBody.content;
    expect(Object.keys(body)).toEqual(
      expect.arrayContaining(['image/jpeg', 'image/png', 'image/webp', 'image/gif', 'multipart/form-data']),
    );
    expect(doc.paths['/v1/classify'].post.responses['200'].content['application/json'].schema.$ref).toBe(
      '#/components/schemas/ClassifyResult',
    );
    expect(doc.paths['/v1/classify'].post.responses['415'].content['application/problem+json']).toBeTruthy();
    expect(doc.components.schemas.ClassifyResult.properties).toHaveProperty('timings');
    const docs = await rt.app.request('/docs');
    expect(docs.status).toBe(200);
    expect(await docs.text()).toMatch(/openapi\.json/);
    const page = await rt.app.request('/');
    expect(page.headers.get('content-type')).toMatch(/text\/html/);
    const html = await page.text();
    expect(html).toContain('v1/classify');
    expect(html).toContain('type="file"');
  });

  it('sends CORS headers for any origin by default, including preflight', async () => {
    const res = await rt.app.request('/v1/classify', {
      method: 'OPTIONS',
      headers: {
        origin: 'https://example.org',
        'access-control-request-method': 'POST',
        'access-control-request-headers': 'authorization,content-type',
      },
    });
    expect(res.status).toBe(204);
    expect(res.headers.get('access-control-allow-origin')).toBe('*');
    expect(res.headers.get('access-control-allow-headers')).toMatch(/Authorization/i);
  });
});

describe('without a model', () => {
  it('answers 503 problems for classify and model, 503 readiness, 200 liveness', async () => {
    const bare = createRuntime(configFromEnv({}), decodeImage, { log: memoryLogger(), backendLog: quiet });
    await bare.ready;
    const res = await bare.app.request('/v1/classify', {
      method: 'POST',
      body: await makePhoto('jpeg'),
      headers: { 'content-type': 'image/jpeg' },
    });
    await expectProblem(res, 503, /MODEL_URI/);
    await expectProblem(await bare.app.request('/v1/model'), 503);
    const ready = await bare.app.request('/readyz');
    expect(ready.status).toBe(503);
    expect(await ready.json()).toMatchObject({ ready: false, detail: 'no model configured' });
    expect((await bare.app.request('/healthz')).status).toBe(200);
  });
});
