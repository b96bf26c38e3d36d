// Hostile requests and open-by-default endpoints: many-part and slow bodies, the edge's truncated
// bodies, security headers on every answer, the docs without a CDN, the serve command's defaults,
// key rotation. No assertion depends on timing except that a slow body is cut at all.
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { connect } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { Command } from 'commander';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { register } from '../cli/commands/serve.js';
import { initBackend } from '../core/backend.js';
import { decodeCounter, decodeImage } from '../core/image.js';
import { tf } from '../core/tf.js';
import { configFromEnv, EDGE_MAX_BODY_BYTES, LAMBDA_MAX_BODY_BYTES } from '../functions/config.js';
import { truncatedBodyResult } from '../functions/edge-body.js';
import { silentLogger } from '../functions/logger.js';
import { startNodeServer } from '../functions/node.js';
import { apiKeySource, createRuntime, type Runtime } from '../functions/runtime.js';
import { manyPartBody, multipartOf } from './helpers/hostile-images.js';
import { makeModelDir } from './helpers/model-dir.js';
import { makePhoto } from './helpers/tiny-model.js';

let dir: string;
let rt: Runtime;
const quiet = () => {};

beforeAll(async () => {
  await initBackend('auto', quiet);
  dir = await mkdtemp(path.join(os.tmpdir(), 'edgetune-hostile-http-'));
  await makeModelDir(dir, { inputSize: 32 });
  rt = createRuntime(configFromEnv({ MODEL_URI: dir }), decodeImage, { log: silentLogger, backendLog: quiet });
  await rt.ready;
});
afterAll(async () => {
  rt?.holder.dispose();
  if (dir) await rm(dir, { recursive: true, force: true });
});

/** A request body that counts how many bytes the server pulled from it. */
function countingBody(bytes: Uint8Array, chunk = 16 * 1024): { stream: ReadableStream<Uint8Array>; pulled: () => number } {
  let at = 0;
  const stream = new ReadableStream<Uint8Array>({
    pull(c) {
      if (at >= bytes.length) return c.close();
      c.enqueue(bytes.slice(at, at + chunk));
      at += chunk;
    },
  });
  return { stream, pulled: () => Math.min(at, bytes.length) };
}

describe('multipart limits act while the body streams', () => {
  it('a 60,000-part body is refused with 413 after reading a small part of it, without decoding or leaking', async () => {
    const { body, type } = manyPartBody(60_000);
    const { stream, pulled } = countingBody(body);
    const decodes = decodeCounter.sharp;
    const tensors = tf.memory().numTensors;
    const res = await rt.app.request('/v1/classify/batch', {
      method: 'POST',
      body: stream,
      headers: { 'content-type': type, 'content-length': String(body.length) },
      duplex: 'half',
    } as RequestInit);
    expect(res.status).toBe(413);
    expect((await res.json()).detail).toMatch(/at most 16 images/);
    expect(pulled()).toBeLessThan(body.length / 20);
    expect(decodeCounter.sharp).toBe(decodes);
    expect(tf.memory().numTensors).toBe(tensors);
  });

  it('other fields and files are tolerated up to a few, then refused; the image count is still exact', async () => {
    const photo = await makePhoto('jpeg', 40, 30);
    const form = new FormData();
    form.append('note', 'hello');
    form.append('other', new Blob([new Uint8Array(10)]), 'x.bin');
    form.append('image', new Blob([photo], { type: 'image/jpeg' }), 'a.jpg');
    expect((await rt.app.request('/v1/classify', { method: 'POST', body: form })).status).toBe(200);
    const noisy = new FormData();
    for (let i = 0; i < 40; i++) noisy.append(`f${i}`, 'x');
    noisy.append('image', new Blob([photo], { type: 'image/jpeg' }), 'a.jpg');
    expect((await rt.app.request('/v1/classify', { method: 'POST', body: noisy })).status).toBe(413);
    const two = multipartOf([
      { bytes: photo, type: 'image/jpeg' },
      { bytes: photo, type: 'image/jpeg' },
    ]);
    const res = await rt.app.request('/v1/classify', {
      method: 'POST',
      body: two.body as Uint8Array<ArrayBuffer>,
      headers: { 'content-type': two.type },
    });
    expect(res.status).toBe(413);
  });

  it('a part cut short, a missing boundary and a body that ends mid-part are 400s', async () => {
    const photo = await makePhoto('jpeg', 40, 30);
    const { body, type } = multipartOf([{ bytes: photo, type: 'image/jpeg' }]);
    const cut = body.slice(0, body.length - 60);
    expect((await rt.app.request('/v1/classify', { method: 'POST', body: cut, headers: { 'content-type': type } })).status).toBe(400);
    expect(
      (
        await rt.app.request('/v1/classify', {
          method: 'POST',
          body: body as Uint8Array<ArrayBuffer>,
          headers: { 'content-type': 'multipart/form-data' },
        })
      ).status,
    ).toBe(400);
  });
});

describe('the Node server', () => {
  it('binds loopback by default and cuts a slow body off with 408 (request timeout)', async () => {
    const server = await startNodeServer({
      config: configFromEnv({ MODEL_URI: dir, LOG_LEVEL: 'silent' }),
      port: 0,
      log: silentLogger,
      waitForModel: true,
      limits: { requestTimeoutMs: 400, headersTimeoutMs: 400 },
    });
    try {
      expect(server.url).toMatch(/^http:\/\/127\.0\.0\.1:/);
      const answer = await new Promise<string>((resolve, reject) => {
        const sock = connect(server.port, '127.0.0.1', () => {
          sock.write(`POST /v1/classify HTTP/1.1\r\nHost: x\r\nContent-Type: image/jpeg\r\nContent-Length: 100000\r\n\r\n`);
          sock.write(new Uint8Array([0xff, 0xd8, 0xff])); // ...and nothing more
        });
        let got = '';
        sock.on('data', (d) => {
          got += d.toString('latin1');
        });
        sock.on('close', () => resolve(got));
        sock.on('error', reject);
        setTimeout(() => {
          sock.destroy();
          resolve(`${got}(still open after 10 s)`);
        }, 10_000).unref();
      });
      expect(answer).toMatch(/^HTTP\/1\.1 408/);
    } finally {
      await server.close();
    }
  });
});

describe('the Node server connection cap', () => {
  it('drops connections beyond maxConnections without answering them', async () => {
    const server = await startNodeServer({
      config: configFromEnv({ MODEL_URI: dir, LOG_LEVEL: 'silent' }),
      port: 0,
      log: silentLogger,
      limits: { maxConnections: 2 },
    });
    const open = (): Promise<import('node:net').Socket> =>
      new Promise((resolve, reject) => {
        const s = connect(server.port, '127.0.0.1', () => resolve(s));
        s.on('error', reject);
      });
    const held = [await open(), await open()];
    try {
      await new Promise((r) => setTimeout(r, 100)); // let the server accept both
      const third = await open();
      const outcome = await new Promise<string>((resolve) => {
        let got = '';
        third.on('data', (d) => {
          got += d.toString('latin1');
        });
        third.on('close', () => resolve(got === '' ? 'closed unanswered' : got));
        third.on('error', () => resolve('closed unanswered'));
        third.write('GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n');
        setTimeout(() => resolve(got || 'still open'), 5000).unref();
      });
      expect(outcome).toBe('closed unanswered');
      // A held connection still works.
      const answer = await new Promise<string>((resolve) => {
        held[0].once('data', (d) => resolve(d.toString('latin1')));
        held[0].write('GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n');
      });
      expect(answer).toMatch(/^HTTP\/1\.1 200/);
    } finally {
      for (const s of held) s.destroy();
      await server.close();
    }
  });
});

describe('open-by-default endpoints', () => {
  const routes = [
    '/',
    '/docs',
    '/docs/swagger-ui-bundle.js',
    '/docs/swagger-ui.css',
    '/docs/init.js',
    '/openapi.json',
    '/healthz',
    '/readyz',
    '/v1/model',
    '/nope',
  ];

  it('every answer carries nosniff and a CSP; the API allows nothing, the page only its own inline script and style', async () => {
    for (const r of routes) {
      const res = await rt.app.request(r);
      expect(res.headers.get('x-content-type-options'), r).toBe('nosniff');
      const csp = res.headers.get('content-security-policy') ?? '';
      expect(csp, r).toMatch(/default-src 'none'/);
      expect(csp, r).not.toMatch(/https?:|\*/);
    }
    const bad = await rt.app.request('/v1/classify', { method: 'POST', body: 'x', headers: { 'content-type': 'text/plain' } });
    expect(bad.headers.get('x-content-type-options')).toBe('nosniff');
    expect(bad.headers.get('content-security-policy')).toMatch(/default-src 'none'/);

    const page = await rt.app.request('/');
    const csp = page.headers.get('content-security-policy') as string;
    expect(csp).not.toMatch(/'unsafe-inline'|'unsafe-eval'/);
    expect(csp).toMatch(/'wasm-unsafe-eval'/);
    const html = await page.text();
    const { createHash } = await import('node:crypto');
    const hashOf = (s: string) => `'sha256-${createHash('sha256').update(s).digest('base64')}'`;
    const script = html.match(/<script>([\s\S]*?)<\/script>/)?.[1] as string;
    const style = html.match(/<style>([\s\S]*?)<\/style>/)?.[1] as string;
    expect(csp).toContain(`script-src ${hashOf(script)}`);
    expect(csp).toContain(`style-src ${hashOf(style)}`);
    expect(html).not.toMatch(/<script src=|https?:\/\//);
  });

  it('/docs is swagger-ui served from node_modules by our own routes, with no other origin', async () => {
    const html = await (await rt.app.request('/docs')).text();
    expect(html).not.toMatch(/https?:\/\//);
    expect(html).toContain('src="docs/swagger-ui-bundle.js"');
    const js = await rt.app.request('/docs/swagger-ui-bundle.js');
    expect(js.status).toBe(200);
    expect(js.headers.get('content-type')).toMatch(/javascript/);
    expect((await js.arrayBuffer()).byteLength).toBeGreaterThan(500_000);
    expect((await rt.app.request('/docs/../package.json')).status).toBe(404);
    expect((await rt.app.request('/docs/index.html')).status).toBe(404);
  });

  it('/readyz and 503s do not show internal paths', async () => {
    const missing = path.join(dir, 'no-such-model');
    const bad = createRuntime(configFromEnv({ MODEL_URI: missing }), decodeImage, { log: silentLogger, backendLog: quiet });
    await bad.ready;
    try {
      for (const r of ['/readyz', '/v1/model']) {
        const res = await bad.app.request(r);
        expect(res.status).toBe(503);
        expect(await res.text(), r).not.toContain(dir);
      }
    } finally {
      bad.holder.dispose();
    }
  });

  it('body limits default to what Lambda and Lambda@Edge can carry', () => {
    expect(LAMBDA_MAX_BODY_BYTES * (4 / 3)).toBeLessThan(6_000_000);
    expect(configFromEnv({}, {}, { maxBodyBytes: LAMBDA_MAX_BODY_BYTES }).maxBodyBytes).toBe(LAMBDA_MAX_BODY_BYTES);
    expect(configFromEnv({ MAX_BODY_BYTES: '1000' }, {}, { maxBodyBytes: LAMBDA_MAX_BODY_BYTES }).maxBodyBytes).toBe(1000);
    expect(configFromEnv({}).maxInputPixels).toBe(4096 * 4096);
  });

  it('Lambda@Edge: a body CloudFront truncated is a 413 problem, never decoded', () => {
    const event = (inputTruncated: boolean) => ({
      Records: [{ cf: { request: { body: { inputTruncated, data: 'AAAA', encoding: 'base64' } } } }],
    });
    const r = truncatedBodyResult(event(true));
    expect(r?.status).toBe('413');
    expect(JSON.parse(r?.body as string)).toMatchObject({ status: 413, detail: expect.stringContaining(String(EDGE_MAX_BODY_BYTES)) });
    expect(r?.headers['x-content-type-options'][0].value).toBe('nosniff');
    expect(truncatedBodyResult(event(false))).toBeUndefined();
    expect(truncatedBodyResult({ Records: [{ cf: { request: {} } }] })).toBeUndefined();
  });
});

describe('API keys', () => {
  it('serve refuses --api-keys (visible in ps) with a message naming the alternatives', async () => {
    const program = new Command().exitOverride();
    register(program);
    const err = vi.spyOn(process.stderr, 'write').mockImplementation(() => true);
    const before = process.exitCode;
    try {
      await program.parseAsync(['node', 'edgetune', 'serve', '--api-keys', 'secret1', '--port', '0']);
      expect(err.mock.calls.map((c) => String(c[0])).join('')).toMatch(/--api-keys is no longer accepted.*API_KEYS.*--api-keys-file/s);
      expect(process.exitCode).toBe(1);
    } finally {
      err.mockRestore();
      process.exitCode = before;
    }
  });

  it('keys from a file are re-read after the TTL, so a revoked key stops working without a restart', async () => {
    const file = path.join(dir, 'keys.txt');
    await writeFile(file, 'alpha,beta');
    let now = 1_000_000;
    const spy = vi.spyOn(Date, 'now').mockImplementation(() => now);
    try {
      const keys = apiKeySource(configFromEnv({ API_KEYS_FILE: file, API_KEYS_TTL_SECONDS: '60' }));
      expect(await keys()).toEqual(['alpha', 'beta']);
      await writeFile(file, '["gamma"]');
      now += 30_000;
      expect(await keys()).toEqual(['alpha', 'beta']);
      now += 31_000;
      expect(await keys()).toEqual(['gamma']);
    } finally {
      spy.mockRestore();
    }
  });

  it('secret keys are cached for the TTL, and a failed fetch is retried on the next call', async () => {
    let now = 0;
    const spy = vi.spyOn(Date, 'now').mockImplementation(() => now);
    const answers: (string[] | Error)[] = [['k1'], new Error('throttled'), ['k2']];
    let calls = 0;
    const load = async () => {
      const a = answers[calls++];
      if (a instanceof Error) throw a;
      return a;
    };
    try {
      const keys = apiKeySource(configFromEnv({ API_KEYS_SECRET_ARN: 'arn:aws:secretsmanager:x', API_KEYS_TTL_SECONDS: '10' }), load);
      expect(await keys()).toEqual(['k1']);
      expect(await keys()).toEqual(['k1']);
      expect(calls).toBe(1);
      now += 11_000;
      await expect(keys()).rejects.toThrow(/throttled/);
      expect(await keys()).toEqual(['k2']);
      expect(calls).toBe(3);
    } finally {
      spy.mockRestore();
    }
  });
});
