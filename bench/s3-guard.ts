// npm run bench:s3-guard — the embedded S3 before and after the guard: what an unsigned local
// client, a foreign web page and a traversing key get from bare s3rver and from startS3rver, and
// the guard's cost per signed request (sequential 1 KiB PUT and GET). Options: --requests 300.
import { existsSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import { GetObjectCommand, PutObjectCommand, S3Client } from '@aws-sdk/client-s3';
import S3rver from 's3rver';
import { startS3rver } from '../core/s3/embedded.js';

const arg = (name: string, dflt: number) => {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 ? Number(process.argv[i + 1]) : dflt;
};
const N = arg('requests', 300);

function raw(port: number, method: string, p: string, headers: Record<string, string> = {}, body?: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const req = http.request({ host: '127.0.0.1', port, method, path: p, headers }, (res) => {
      res.resume();
      res.on('end', () => resolve(res.statusCode ?? 0));
    });
    req.on('error', reject);
    req.end(body);
  });
}

async function probe(port: number, root: string): Promise<Record<string, string>> {
  const form =
    '--b\r\nContent-Disposition: form-data; name="key"\r\n\r\ndatasets/web/x.jpg\r\n--b\r\nContent-Disposition: form-data; name="file"; filename="x"\r\n\r\nx\r\n--b--\r\n';
  return {
    'unsigned PUT': String(await raw(port, 'PUT', '/edgetune/datasets/u/x.jpg', {}, 'x')),
    'unsigned GET': String(await raw(port, 'GET', '/edgetune/datasets/u/x.jpg')),
    'unsigned LIST': String(await raw(port, 'GET', '/edgetune?list-type=2')),
    'form POST from https://evil.example': String(
      await raw(port, 'POST', '/edgetune', { origin: 'https://evil.example', 'content-type': 'multipart/form-data; boundary=b' }, form),
    ),
    'PUT ../../outside/x': `${await raw(port, 'PUT', '/edgetune/../../outside/x', {}, 'x')}, file outside: ${existsSync(path.join(root, 'outside', 'x')) || existsSync(path.join(root, 'outside'))}`,
    'Host: evil.example': String(await raw(port, 'GET', '/edgetune?list-type=2', { host: `evil.example:${port}` })),
  };
}

async function timeSigned(
  endpoint: string,
  creds: { accessKeyId: string; secretAccessKey: string },
): Promise<{ put: number; get: number }> {
  const c = new S3Client({
    endpoint,
    forcePathStyle: true,
    region: 'us-east-1',
    credentials: creds,
    requestChecksumCalculation: 'WHEN_REQUIRED',
    responseChecksumValidation: 'WHEN_REQUIRED',
  });
  const body = Buffer.alloc(1024, 7);
  for (let i = 0; i < 10; i++) await c.send(new PutObjectCommand({ Bucket: 'edgetune', Key: `bench/w${i}`, Body: body }));
  let t = performance.now();
  for (let i = 0; i < N; i++) await c.send(new PutObjectCommand({ Bucket: 'edgetune', Key: `bench/${i % 20}`, Body: body }));
  const put = (performance.now() - t) / N;
  t = performance.now();
  for (let i = 0; i < N; i++)
    await (await c.send(new GetObjectCommand({ Bucket: 'edgetune', Key: `bench/${i % 20}` }))).Body?.transformToByteArray();
  const get = (performance.now() - t) / N;
  c.destroy();
  return { put, get };
}

const tmp = await mkdtemp(path.join(os.tmpdir(), 'edgetune-bench-s3-'));
try {
  // Before: s3rver as `npm start` ran it (its own TCP listener, fixed S3RVER credentials).
  const bareRoot = path.join(tmp, 'bare');
  const bare = new S3rver({
    address: '127.0.0.1',
    port: 0,
    directory: path.join(bareRoot, 'data', 's3'),
    silent: true,
    vhostBuckets: false,
    configureBuckets: [{ name: 'edgetune' }],
  });
  const { port: barePort } = await bare.run();
  const before = await probe(barePort, path.join(bareRoot, 'data'));
  const beforeT = await timeSigned(`http://127.0.0.1:${barePort}`, { accessKeyId: 'S3RVER', secretAccessKey: 'S3RVER' });
  bare.httpServer?.closeAllConnections();
  await bare.close();

  const guardedRoot = path.join(tmp, 'guarded');
  const s3 = await startS3rver({ dir: path.join(guardedRoot, 'data', 's3'), buckets: ['edgetune'] });
  const after = await probe(s3.port, path.join(guardedRoot, 'data'));
  const afterT = await timeSigned(s3.endpoint, s3.credentials);
  await s3.close();

  console.log('request                                   bare s3rver                     guarded (startS3rver)');
  for (const k of Object.keys(before)) console.log(`${k.padEnd(42)}${before[k].padEnd(32)}${after[k]}`);
  console.log(`signed 1 KiB PUT, ms/request (n=${N})     ${beforeT.put.toFixed(2).padEnd(32)}${afterT.put.toFixed(2)}`);
  console.log(`signed 1 KiB GET, ms/request (n=${N})     ${beforeT.get.toFixed(2).padEnd(32)}${afterT.get.toFixed(2)}`);
} finally {
  await rm(tmp, { recursive: true, force: true });
}
