import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { initBackend } from '../core/backend.js';
import { configFromEnv } from '../functions/config.js';
import { memoryLogger } from '../functions/logger.js';
import { type NodeServer, startNodeServer } from '../functions/node.js';
import { makeModelDir } from './helpers/model-dir.js';
import { makePhoto } from './helpers/tiny-model.js';

let dir: string;
let server: NodeServer;
const log = memoryLogger();

beforeAll(async () => {
  await initBackend('auto', () => {});
  dir = await mkdtemp(path.join(os.tmpdir(), 'edgetune-http-'));
  await makeModelDir(dir, { inputSize: 64, classes: ['alpaca', 'llama', 'other'] });
  server = await startNodeServer({
    config: configFromEnv({ MODEL_URI: dir, MAX_BODY_BYTES: String(100_000) }),
    port: 0,
    hostname: '127.0.0.1',
    log,
    waitForModel: true,
  });
});
afterAll(async () => {
  await server?.close();
  if (dir) await rm(dir, { recursive: true, force: true });
});

describe('Node server over real HTTP', () => {
  it('classifies JPEGs sent concurrently over keep-alive connections', async () => {
    const images = await Promise.all([1, 2, 3, 4, 5, 6, 7, 8].map((s) => makePhoto('jpeg', 320, 240, s)));
    const answers = await Promise.all(
      images.map((img) => fetch(`${server.url}/v1/classify`, { method: 'POST', body: img, headers: { 'content-type': 'image/jpeg' } })),
    );
    for (const res of answers) {
      expect(res.status).toBe(200);
      expect(res.headers.get('x-request-id')).toMatch(/\S/);
      const j = await res.json();
      expect(j.predictions).toHaveLength(3);
      expect(j.predictions.reduce((s: number, p: { score: number }) => s + p.score, 0)).toBeCloseTo(1, 5);
    }
    const ready = await (await fetch(`${server.url}/readyz`)).json();
    expect(ready).toMatchObject({ ready: true, model: { name: 'test-model' } });
  });

  it('refuses an oversized body by Content-Length and by a chunked stream with 413 problems', async () => {
    const big = new Uint8Array(150_000);
    const a = await fetch(`${server.url}/v1/classify`, { method: 'POST', body: big, headers: { 'content-type': 'image/jpeg' } });
    expect(a.status).toBe(413);
    expect(a.headers.get('content-type')).toBe('application/problem+json');
    const chunks = [new Uint8Array(60_000), new Uint8Array(60_000)];
    const stream = new ReadableStream({
      pull(c) {
        const next = chunks.shift();
        if (next) c.enqueue(next);
        else c.close();
      },
    });
    const b = await fetch(`${server.url}/v1/classify`, {
      method: 'POST',
      body: stream,
      headers: { 'content-type': 'image/png' },
      duplex: 'half',
    } as RequestInit);
    expect(b.status).toBe(413);
    expect((await b.json()).detail).toMatch(/100000-byte limit/);
  });

  it('logs one JSON line per request with its request id', async () => {
    const res = await fetch(`${server.url}/healthz`, { headers: { 'x-request-id': 'http-test-1' } });
    expect(res.headers.get('x-request-id')).toBe('http-test-1');
    expect(log.entries.filter((e) => e.requestId === 'http-test-1')).toEqual([
      expect.objectContaining({ msg: 'request', status: 200, path: '/healthz' }),
    ]);
  });
});
