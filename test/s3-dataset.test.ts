import { mkdir, readdir, readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { DeleteObjectCommand, PutObjectCommand } from '@aws-sdk/client-s3';
import sharp from 'sharp';
import { beforeAll, describe, expect, it } from 'vitest';
import { sdkClient } from '../core/s3/client.js';
import { listDataset } from '../training/dataset.js';
import { skipReason, syncDatasetWithStats, uploadDataset } from '../training/dataset-s3.js';
import { useEmbeddedS3 } from './helpers/embedded-s3.js';

const env = useEmbeddedS3('s3-ds');
let src: string;

async function png(rgb: [number, number, number]): Promise<Buffer> {
  return sharp({ create: { width: 16, height: 16, channels: 3, background: { r: rgb[0], g: rgb[1], b: rgb[2] } } })
    .png()
    .toBuffer();
}

beforeAll(async () => {
  process.env.EDGETUNE_S3_BACKOFF_MS = '20';
  src = path.join(env.tmp, 'src');
  for (const [cls, color] of [
    ['alpaca', [200, 150, 100]],
    ['not_alpaca', [20, 90, 200]],
  ] as const) {
    await mkdir(path.join(src, cls, 'sub'), { recursive: true });
    for (let i = 0; i < 5; i++)
      await writeFile(path.join(src, cls, `${i}.png`), await png([color[0], color[1], (color[2] + i * 10) % 256]));
    await writeFile(path.join(src, cls, 'sub', 'deep.png'), await png([1, 2, 3]));
  }
  await writeFile(path.join(src, '.DS_Store'), 'hidden');
  await writeFile(path.join(src, 'README.md'), 'not an image');
});

describe('dataset upload and sync', () => {
  const uri = 's3://edgetune/datasets/demo/';

  it('uploads a folder with progress and skips files whose ETag already matches', async () => {
    const progress: number[] = [];
    const first = await uploadDataset(src, uri, { onProgress: (p) => progress.push(p.done) });
    expect(first).toMatchObject({ uploaded: 13, skipped: 0, total: 13 });
    expect(progress.sort((a, b) => a - b)).toEqual(Array.from({ length: 13 }, (_, i) => i + 1));
    await writeFile(path.join(src, 'alpaca', '0.png'), await png([255, 0, 0]));
    const second = await uploadDataset(src, uri);
    expect(second).toMatchObject({ uploaded: 1, skipped: 12 });
  });

  it('syncs into a cache that the local dataset loader reads, and a rerun downloads nothing', async () => {
    const cacheDir = path.join(env.tmp, 'cache');
    await (await sdkClient()).client.send(new PutObjectCommand({ Bucket: 'edgetune', Key: 'datasets/demo/_RETRAIN', Body: '' }));
    const a = await syncDatasetWithStats(uri, { cacheDir, concurrency: 3 });
    // README.md (top level, not an image) is listed but never downloaded; the _RETRAIN marker is not data.
    expect(a).toMatchObject({ objects: 12, downloaded: 12, cached: 0 });
    expect(a.skipped).toEqual([{ key: 'datasets/demo/README.md', reason: 'not inside a class folder (<class>/<image>)' }]);
    expect(a.dir).toBe(path.join(cacheDir, 'edgetune', 'datasets', 'demo'));
    const listing = await listDataset(a.dir);
    expect(listing.classes).toEqual(['alpaca', 'not_alpaca']);
    expect(listing.files.map((f) => f.relPath)).toContain('alpaca/sub/deep.png');
    expect(listing.files).toHaveLength(12);
    expect(await readFile(path.join(a.dir, 'alpaca/0.png'))).toEqual(await readFile(path.join(src, 'alpaca/0.png')));

    const b = await syncDatasetWithStats(uri, { cacheDir });
    expect(b).toMatchObject({ downloaded: 0, cached: 12, removed: 0, bytesDownloaded: 0 });

    // A changed object is fetched again, a deleted one disappears locally.
    await (await sdkClient()).client.send(
      new PutObjectCommand({ Bucket: 'edgetune', Key: 'datasets/demo/not_alpaca/1.png', Body: await png([9, 9, 9]) }),
    );
    await (await sdkClient()).client.send(new DeleteObjectCommand({ Bucket: 'edgetune', Key: 'datasets/demo/not_alpaca/2.png' }));
    const c = await syncDatasetWithStats(uri, { cacheDir });
    expect(c).toMatchObject({ objects: 11, downloaded: 1, cached: 10, removed: 1 });
    expect((await readdir(path.join(a.dir, 'not_alpaca'))).sort()).toEqual(['0.png', '1.png', '3.png', '4.png', 'sub']);
  });

  it('a local file damaged in the cache is fetched again', async () => {
    const cacheDir = path.join(env.tmp, 'cache');
    const dir = path.join(cacheDir, 'edgetune', 'datasets/demo/');
    await writeFile(path.join(dir, 'alpaca/1.png'), 'x');
    const d = await syncDatasetWithStats(uri, { cacheDir });
    expect(d.downloaded).toBe(1);
  });

  it('skips and reports keys that are not images, too large (from the listing), outside a class folder or hidden; the rest syncs', async () => {
    const put = async (Key: string, Body: Buffer | string) =>
      (await sdkClient()).client.send(new PutObjectCommand({ Bucket: 'edgetune', Key, Body }));
    const big = Buffer.alloc(4096, 1);
    await put('datasets/mixed/cats/ok.png', await png([1, 200, 3]));
    await put('datasets/mixed/dogs/ok.PNG', await png([200, 1, 3]));
    await put('datasets/mixed/dogs/notes.txt', 'hello');
    await put('datasets/mixed/dogs/payload.exe', 'MZ');
    await put('datasets/mixed/dogs/huge.jpg', big);
    await put('datasets/mixed/dogs/empty.jpg', '');
    await put('datasets/mixed/dogs/.hidden.jpg', await png([1, 1, 1]));
    await put('datasets/mixed/loose.jpg', await png([1, 1, 1]));
    const lines: string[] = [];
    const cacheDir = path.join(env.tmp, 'c-mixed');
    const r = await syncDatasetWithStats('s3://edgetune/datasets/mixed/', { cacheDir, maxObjectBytes: 2048, log: (l) => lines.push(l) });
    expect(r).toMatchObject({ objects: 2, downloaded: 2 });
    const reasons = Object.fromEntries(r.skipped.map((k) => [k.key.slice('datasets/mixed/'.length), k.reason]));
    expect(reasons).toEqual({
      'dogs/notes.txt': 'not an image type training reads (.txt)',
      'dogs/payload.exe': 'not an image type training reads (.exe)',
      'dogs/huge.jpg': 'larger than 2048 bytes (4096)',
      'dogs/empty.jpg': 'empty object',
      'dogs/.hidden.jpg': 'hidden file',
      'loose.jpg': 'not inside a class folder (<class>/<image>)',
    });
    expect(lines.join('\n')).toContain('6 skipped');
    expect(lines.join('\n')).toContain('skipped datasets/mixed/dogs/huge.jpg: larger than 2048 bytes');
    const listing = await listDataset(r.dir);
    expect(listing.files.map((f) => f.relPath).sort()).toEqual(['cats/ok.png', 'dogs/ok.PNG']);
    // Keys real S3 accepts but the embedded one refuses: decided from the listing, without a download.
    const opts = { maxObjectBytes: 1 << 20 };
    expect(skipReason('../../etc/x.jpg', 10, opts)).toMatch(/escapes/);
    expect(skipReason('a/../../x.jpg', 10, opts)).toMatch(/escapes/);
    expect(skipReason('a//x.jpg', 10, opts)).toMatch(/empty segments/);
    expect(skipReason('a/x\\y.jpg', 10, opts)).toMatch(/unsafe/);
    expect(skipReason('a/x\u0000.jpg', 10, opts)).toMatch(/unsafe/);
    expect(skipReason('a/x.jpg', 10, opts)).toBeUndefined();
    expect(skipReason('labels.csv', 10, { ...opts, acceptExtra: (rel) => rel === 'labels.csv' })).toBeUndefined();
  });

  it('says clearly when the prefix is empty or the server is unreachable', async () => {
    await expect(syncDatasetWithStats('s3://edgetune/datasets/none/', { cacheDir: path.join(env.tmp, 'c2') })).rejects.toThrow(
      /no objects under s3:\/\/edgetune\/datasets\/none\//,
    );
    const saved = { ...process.env };
    // An endpoint this process did not start: its key pair comes from the environment, as a user sets it.
    Object.assign(process.env, {
      EDGETUNE_S3_ENDPOINT: 'http://127.0.0.1:1',
      EDGETUNE_S3_ACCESS_KEY_ID: 'K',
      EDGETUNE_S3_SECRET_ACCESS_KEY: 'S',
    });
    try {
      await expect(syncDatasetWithStats(uri, { cacheDir: path.join(env.tmp, 'c3') })).rejects.toThrow(
        /LIST s3:\/\/edgetune\/datasets\/demo\/ failed after 4 attempts: .*ECONNREFUSED/,
      );
      delete process.env.EDGETUNE_S3_ACCESS_KEY_ID;
      // Without one: says so before trying.
      await expect(syncDatasetWithStats(uri, { cacheDir: path.join(env.tmp, 'c4') })).rejects.toThrow(
        /no credentials for it: set EDGETUNE_S3_ACCESS_KEY_ID/,
      );
    } finally {
      for (const k of ['EDGETUNE_S3_ENDPOINT', 'EDGETUNE_S3_ACCESS_KEY_ID', 'EDGETUNE_S3_SECRET_ACCESS_KEY']) {
        if (saved[k] === undefined) delete process.env[k];
        else process.env[k] = saved[k];
      }
    }
  });
});
