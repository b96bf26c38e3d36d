import { createHash } from 'node:crypto';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { createRequire } from 'node:module';
import os from 'node:os';
import path from 'node:path';
import { Hono } from 'hono';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { initBackend } from '../core/backend.js';
import { decodeImage } from '../core/image.js';
import { tf } from '../core/tf.js';
import { BROWSER_ASSETS, folderLocator, mountBrowserAssets } from '../functions/browser-assets.js';
import { configFromEnv } from '../functions/config.js';
import { silentLogger } from '../functions/logger.js';
import { PAGE_CSP, PAGE_SCRIPT } from '../functions/page.js';
import { problemResponse } from '../functions/problem.js';
import { createRuntime, type Runtime } from '../functions/runtime.js';
import { makeModelDir } from './helpers/model-dir.js';

const require = createRequire(import.meta.url);
const quiet = () => {};
let dir: string;
let rt: Runtime;

beforeAll(async () => {
  await initBackend('auto', quiet);
  dir = await mkdtemp(path.join(os.tmpdir(), 'edgetune-page-assets-'));
  await makeModelDir(path.join(dir, 'model'), { inputSize: 32 });
  rt = createRuntime(configFromEnv({ MODEL_URI: path.join(dir, 'model') }), decodeImage, { log: silentLogger, backendLog: quiet });
  await rt.ready;
});
afterAll(async () => {
  rt?.holder.dispose();
  if (dir) await rm(dir, { recursive: true, force: true });
});

const directives = (csp: string) =>
  Object.fromEntries(
    csp
      .split(';')
      .map((d) => d.trim().split(/\s+/))
      .map(([k, ...v]) => [k, v]),
  );

describe('the page CSP', () => {
  it('allows exactly its inline script and style, scripts from self, WASM compilation and fetches to self', async () => {
    const res = await rt.app.request('/');
    const csp = res.headers.get('content-security-policy') as string;
    expect(csp).toBe(PAGE_CSP);
    const html = await res.text();
    const hashOf = (s: string) => `'sha256-${createHash('sha256').update(s).digest('base64')}'`;
    const script = html.match(/<script>([\s\S]*?)<\/script>/)?.[1] as string;
    const style = html.match(/<style>([\s\S]*?)<\/style>/)?.[1] as string;
    expect(script).toBe(PAGE_SCRIPT);
    expect(directives(csp)).toEqual({
      'default-src': ["'none'"],
      'script-src': [hashOf(script), "'self'", "'wasm-unsafe-eval'"],
      'style-src': [hashOf(style)],
      'img-src': ["'self'", 'blob:'],
      'connect-src': ["'self'"],
      'base-uri': ["'none'"],
      'form-action': ["'none'"],
      'frame-ancestors': ["'none'"],
    });
    // The page names only same-origin relative URLs for tfjs and the model.
    expect(script).toContain("'browser/tf.min.js'");
    expect(script).toContain("'v1/model/files/tfjs/model.json'");
    expect(html).not.toMatch(/https?:\/\//);
  });
});

describe('GET /browser/<file>: tfjs 4.22.0 from the installed packages', () => {
  it('serves each allowlisted file byte for byte from node_modules with its media type', async () => {
    for (const [name, entry] of Object.entries(BROWSER_ASSETS)) {
      const res = await rt.app.request(`/browser/${name}`);
      expect(res.status, name).toBe(200);
      expect(res.headers.get('content-type'), name).toBe(entry.type);
      expect(res.headers.get('x-content-type-options')).toBe('nosniff');
      const body = Buffer.from(await res.arrayBuffer());
      expect(body.equals(await readFile(require.resolve(entry.module))), name).toBe(true);
      expect(res.headers.get('content-length')).toBe(String(body.byteLength));
    }
    const js = await (await rt.app.request('/browser/tf.min.js')).text();
    expect(js).toContain('4.22.0');
    expect(require('@tensorflow/tfjs/package.json').version).toBe('4.22.0');
    expect(require('@tensorflow/tfjs-backend-wasm/package.json').version).toBe('4.22.0');
  });

  it('answers HEAD (the page asks before offering the toggle)', async () => {
    const res = await rt.app.request('/browser/tf.min.js', { method: 'HEAD' });
    expect(res.status).toBe(200);
    expect((await res.arrayBuffer()).byteLength).toBe(0);
  });

  it('serves nothing outside the allowlist, whatever the path', async () => {
    for (const p of [
      '/browser/',
      '/browser/tf.js',
      '/browser/tf.min.js.map',
      '/browser/tfjs-backend-wasm-threaded-simd.wasm',
      '/browser/../package.json',
      '/browser/%2e%2e%2fpackage.json',
      '/browser/tf.min.js/../../package.json',
      '/browser/tf-min.js',
      '/browser/tfXmin.js',
      '/browser/TF.MIN.JS',
    ]) {
      const res = await rt.app.request(p);
      expect(res.status, p).toBe(404);
      expect(res.headers.get('content-type'), p).toBe('application/problem+json');
    }
  });

  it('is a 404 problem when the files are not installed (a bundle built without them)', async () => {
    const app = new Hono();
    mountBrowserAssets(app, folderLocator(path.join(dir, 'nothing-here')));
    app.onError((e) => problemResponse(404, e.message));
    const res = await app.request('/browser/tf.min.js', { method: 'HEAD' });
    expect(res.status).toBe(404);
    const get = await app.request('/browser/tfjs-backend-wasm-simd.wasm');
    expect(get.status).toBe(404);
    expect((await get.json()).detail).toMatch(/not part of this deployment/);
  });
});

describe('GET /v1/model/files/tfjs/{model.json,weights.bin} of a version published without formats (a local model folder)', () => {
  it('serves the served model as a tfjs layers model that loads and predicts what the API predicts', async () => {
    const mj = await rt.app.request('/v1/model/files/tfjs/model.json');
    expect(mj.status).toBe(200);
    expect(mj.headers.get('content-type')).toMatch(/application\/json/);
    const version = mj.headers.get('x-model-version');
    const info = await (await rt.app.request('/v1/model')).json();
    expect(version).toBe(info.version);
    expect(info.inputResize).toBe('stretch');
    const modelJson = await mj.json();
    expect(modelJson.weightsManifest[0].paths).toEqual(['weights.bin']);
    const wb = await rt.app.request('/v1/model/files/tfjs/weights.bin');
    expect(wb.status).toBe(200);
    const weights = await wb.arrayBuffer();
    // The same bytes the server loaded (the manifest's checked weights.bin, float32).
    expect(Buffer.from(weights).equals(await readFile(path.join(dir, 'model', 'weights.bin')))).toBe(true);

    const before = tf.memory().numTensors;
    const model = await tf.loadLayersModel(
      tf.io.fromMemory({
        modelTopology: modelJson.modelTopology,
        weightSpecs: modelJson.weightsManifest[0].weights,
        weightData: weights,
      }),
    );
    const verification = JSON.parse(await readFile(path.join(dir, 'model', 'verification.json'), 'utf8'));
    const pixels = Buffer.from(verification.pixels, 'base64');
    const out = tf.tidy(() => model.predict(tf.tensor4d(new Uint8Array(pixels), verification.shape, 'int32').toFloat()) as tf.Tensor);
    const p = await out.data();
    out.dispose();
    model.dispose();
    expect(tf.memory().numTensors).toBe(before);
    for (const [i, row] of (verification.probabilities as number[][]).entries()) expect(Math.abs(p[i] - row[1])).toBeLessThan(1e-5);

    // Revalidation by the file's sha256: 304 without a body.
    expect(wb.headers.get('etag')).toBe(`"${createHash('sha256').update(Buffer.from(weights)).digest('hex')}"`);
    const again = await rt.app.request('/v1/model/files/tfjs/weights.bin', {
      headers: { 'if-none-match': wb.headers.get('etag') as string },
    });
    expect(again.status).toBe(304);
    for (const p of ['/v1/model/files/tfjs/other.bin', '/v1/model/files/tfjs/../manifest.json', '/v1/model/files/tfjs/model.json.bak']) {
      expect((await rt.app.request(p)).status, p).toBe(404);
    }
  });

  it('sits behind the API key like the rest of /v1, and is a 503 before a model is loaded', async () => {
    const keyed = createRuntime(configFromEnv({ MODEL_URI: path.join(dir, 'model'), API_KEYS: 's3cret' }), decodeImage, {
      log: silentLogger,
      backendLog: quiet,
    });
    await keyed.ready;
    try {
      expect((await keyed.app.request('/v1/model/files/tfjs/model.json')).status).toBe(401);
      const ok = await keyed.app.request('/v1/model/files/tfjs/model.json', { headers: { authorization: 'Bearer s3cret' } });
      expect(ok.status).toBe(200);
      // The tfjs files are public, like the page itself.
      expect((await keyed.app.request('/browser/tf.min.js', { method: 'HEAD' })).status).toBe(200);
    } finally {
      keyed.holder.dispose();
    }
    const none = createRuntime(configFromEnv({}), decodeImage, { log: silentLogger, backendLog: quiet });
    await none.ready;
    const res = await none.app.request('/v1/model/files/tfjs/model.json');
    expect(res.status).toBe(503);
    expect(res.headers.get('content-type')).toBe('application/problem+json');
  });
});
