import { existsSync } from 'node:fs';
import { mkdtemp, readdir, rm } from 'node:fs/promises';
import http from 'node:http';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { GetObjectCommand, ListObjectsV2Command, PutObjectCommand, S3Client } from '@aws-sdk/client-s3';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type EmbeddedS3, startS3rver } from '../core/s3/embedded.js';
import { isTraversal } from '../core/s3/guard.js';

let s3: EmbeddedS3;
let tmp: string;

const client = (creds: { accessKeyId: string; secretAccessKey: string }) =>
  new S3Client({
    endpoint: s3.endpoint,
    forcePathStyle: true,
    region: 'us-east-1',
    credentials: creds,
    requestChecksumCalculation: 'WHEN_REQUIRED',
    responseChecksumValidation: 'WHEN_REQUIRED',
    maxAttempts: 1,
  });

/** A raw HTTP request (what a local process or a browser can send without the key). */
function raw(
  method: string,
  p: string,
  opts: { headers?: Record<string, string>; body?: string | Buffer } = {},
): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = http.request({ host: '127.0.0.1', port: s3.port, method, path: p, headers: opts.headers }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString() }));
    });
    req.on('error', reject);
    req.end(opts.body);
  });
}

async function filesUnder(dir: string): Promise<string[]> {
  const out: string[] = [];
  for (const e of await readdir(dir, { withFileTypes: true, recursive: true })) if (e.isFile()) out.push(e.name);
  return out;
}

beforeAll(async () => {
  tmp = await mkdtemp(path.join(tmpdir(), 'edgetune-guard-'));
  s3 = await startS3rver({ dir: path.join(tmp, 'data', 's3'), buckets: ['edgetune'] });
});

afterAll(async () => {
  await s3?.close();
  await rm(tmp, { recursive: true, force: true });
});

describe('embedded S3 guard', () => {
  it('serves requests signed with the run credentials (put, get, list)', async () => {
    const c = client(s3.credentials);
    await c.send(new PutObjectCommand({ Bucket: 'edgetune', Key: 'datasets/a/x.txt', Body: 'hello' }));
    const got = await c.send(new GetObjectCommand({ Bucket: 'edgetune', Key: 'datasets/a/x.txt' }));
    expect(await got.Body?.transformToString()).toBe('hello');
    const list = await c.send(new ListObjectsV2Command({ Bucket: 'edgetune', Prefix: 'datasets/' }));
    expect(list.Contents?.map((o) => o.Key)).toEqual(['datasets/a/x.txt']);
    c.destroy();
  });

  it('refuses unsigned PUT, GET and LIST', async () => {
    const put = await raw('PUT', '/edgetune/datasets/a/unsigned.txt', { body: 'x' });
    expect(put.status).toBe(403);
    expect(put.body).toContain('AccessDenied');
    expect((await raw('GET', '/edgetune/datasets/a/x.txt')).status).toBe(403);
    expect((await raw('GET', '/edgetune?list-type=2')).status).toBe(403);
    expect(await filesUnder(path.join(tmp, 'data'))).not.toContain(expect.stringContaining('unsigned'));
  });

  it('refuses requests signed with another key or a wrong secret', async () => {
    const other = client({ accessKeyId: 'S3RVER', secretAccessKey: 'S3RVER' });
    await expect(other.send(new GetObjectCommand({ Bucket: 'edgetune', Key: 'datasets/a/x.txt' }))).rejects.toMatchObject({
      name: 'InvalidAccessKeyId',
    });
    other.destroy();
    const wrong = client({ accessKeyId: s3.credentials.accessKeyId, secretAccessKey: 'not-the-secret' });
    await expect(wrong.send(new PutObjectCommand({ Bucket: 'edgetune', Key: 'datasets/a/w.txt', Body: 'w' }))).rejects.toMatchObject({
      name: 'SignatureDoesNotMatch',
    });
    wrong.destroy();
  });

  it('refuses a body that does not match its signed sha256', async () => {
    // Sign a PUT of "good", then send "evil" with the same headers: a replayed signature cannot carry other bytes.
    let captured: Record<string, string> = {};
    const c = client(s3.credentials);
    c.middlewareStack.add(
      (_next) => async (args) => {
        captured = { ...(args.request as { headers: Record<string, string> }).headers };
        throw new Error('captured');
      },
      { step: 'finalizeRequest', priority: 'low', name: 'capture' },
    );
    await expect(c.send(new PutObjectCommand({ Bucket: 'edgetune', Key: 'datasets/a/replay.txt', Body: 'good' }))).rejects.toThrow(
      'captured',
    );
    c.destroy();
    expect(captured.authorization).toMatch(/^AWS4-HMAC-SHA256 /);
    const good = await raw('PUT', '/edgetune/datasets/a/replay.txt?x-id=PutObject', { headers: captured, body: 'good' });
    expect(good.status).toBe(200);
    const evil = await raw('PUT', '/edgetune/datasets/a/replay.txt?x-id=PutObject', { headers: captured, body: 'evil' });
    expect(evil.status).toBe(400);
    expect(evil.body).toContain('XAmzContentSHA256Mismatch');
    const back = await client(s3.credentials).send(new GetObjectCommand({ Bucket: 'edgetune', Key: 'datasets/a/replay.txt' }));
    expect(await back.Body?.transformToString()).toBe('good');
  });

  it('refuses keys with .. segments, signed or not, and writes nothing outside its folder', async () => {
    const c = client(s3.credentials);
    await expect(c.send(new PutObjectCommand({ Bucket: 'edgetune', Key: '../../outside/x', Body: 'x' }))).rejects.toMatchObject({
      $metadata: { httpStatusCode: 400 },
    });
    await expect(c.send(new PutObjectCommand({ Bucket: 'edgetune', Key: 'datasets/../../../outside/y', Body: 'y' }))).rejects.toMatchObject(
      {
        $metadata: { httpStatusCode: 400 },
      },
    );
    await expect(c.send(new ListObjectsV2Command({ Bucket: 'edgetune', Prefix: '../' }))).rejects.toMatchObject({
      $metadata: { httpStatusCode: 400 },
    });
    c.destroy();
    expect((await raw('PUT', '/edgetune/%2e%2e/%2E%2E/outside/z', { body: 'z' })).status).toBe(400);
    expect(existsSync(path.join(tmp, 'outside'))).toBe(false);
    expect(existsSync(path.join(tmp, 'data', 'outside'))).toBe(false);
    expect(isTraversal('datasets/a/b.jpg')).toBe(false);
    expect(isTraversal('datasets/a/..')).toBe(true);
    expect(isTraversal('datasets/a%2F..%2Fb')).toBe(true);
  });

  it('refuses foreign-Origin form POSTs, CORS preflights and a foreign Host', async () => {
    const form = [
      '--b',
      'Content-Disposition: form-data; name="key"',
      '',
      'datasets/evil/x.jpg',
      '--b',
      'Content-Disposition: form-data; name="file"; filename="x.jpg"',
      '',
      'x',
      '--b--',
      '',
    ].join('\r\n');
    const post = await raw('POST', '/edgetune', {
      headers: { origin: 'https://evil.example', 'content-type': 'multipart/form-data; boundary=b' },
      body: form,
    });
    expect(post.status).toBe(403);
    // Even without an Origin header (a non-browser client), a bare form POST is not an API call here.
    const noOrigin = await raw('POST', '/edgetune', { headers: { 'content-type': 'multipart/form-data; boundary=b' }, body: form });
    expect(noOrigin.status).toBe(405);
    expect((await raw('OPTIONS', '/edgetune/datasets/x', { headers: { 'access-control-request-method': 'PUT' } })).status).toBe(403);
    // DNS rebinding: a page on evil.example resolving to 127.0.0.1 sends its own Host.
    expect((await raw('GET', '/edgetune/datasets/a/x.txt', { headers: { host: `evil.example:${s3.port}` } })).status).toBe(421);
    expect(await filesUnder(path.join(tmp, 'data'))).not.toContain(expect.stringContaining('evil'));
  });

  it('listens on loopback only', async () => {
    await expect(startS3rver({ dir: path.join(tmp, 'other'), address: '0.0.0.0' })).rejects.toThrow(/loopback only/);
  });
});
