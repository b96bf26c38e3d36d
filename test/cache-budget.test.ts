import { spawn, spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, readdir, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { CacheBudget, defaultCacheBudget, memoryLimitBytes, parseBytes, type RunCache } from '../training/cache-budget.js';
import { decodeStream, listDataset } from '../training/dataset.js';
import { ImageSetBuilder } from '../training/image-set.js';
import { hyperparameters } from '../training/manifest-draft.js';
import { resolveTrainOptions } from '../training/options.js';
import { RowStoreBuilder } from '../training/row-store.js';
import { openSpillDirs, SpillArea } from '../training/spill.js';
import { toFloat16 } from '../training/workers/boundary-float16.js';
import { makeDataset } from './helpers/images.js';
import { REPO_DIR } from './helpers/shared.js';

const GiB = 1024 ** 3;
const tmp = () => mkdtemp(path.join(os.tmpdir(), 'edgetune-cache-test-'));
const cacheOf = (budget: number, dir: string): RunCache => ({ budget: new CacheBudget(budget), spill: new SpillArea(dir) });

describe('memory limit and default budget', () => {
  it('takes the smallest of the container limit, the cgroup files and the RAM; ignores "no limit"', async () => {
    const dir = await tmp();
    const v2 = path.join(dir, 'memory.max');
    const v1 = path.join(dir, 'memory.limit_in_bytes');
    await writeFile(v2, 'max\n');
    await writeFile(v1, '9223372036854771712\n'); // cgroup v1's "unlimited"
    const none = memoryLimitBytes({ constrained: () => 2 ** 64, files: [v2, v1], total: () => 16 * GiB });
    expect(none).toBe(16 * GiB);
    await writeFile(v2, `${3 * GiB}\n`);
    expect(memoryLimitBytes({ constrained: () => undefined, files: [v2, v1], total: () => 16 * GiB })).toBe(3 * GiB);
    expect(memoryLimitBytes({ constrained: () => 2 * GiB, files: [v2], total: () => 16 * GiB })).toBe(2 * GiB);
    expect(memoryLimitBytes({ constrained: () => 0, files: [path.join(dir, 'missing')], total: () => 8 * GiB })).toBe(8 * GiB);
  });

  it('is 256 MiB, a quarter of the limit when that is small', () => {
    expect(defaultCacheBudget(14 * GiB)).toBe(GiB / 4);
    expect(defaultCacheBudget(2 * GiB)).toBe(GiB / 4);
    expect(defaultCacheBudget(GiB / 2)).toBe(GiB / 8);
    expect(defaultCacheBudget()).toBeGreaterThan(0);
  });

  it('parses sizes with binary units and refuses anything else', () => {
    expect(parseBytes('0')).toBe(0);
    expect(parseBytes('512M')).toBe(512 * 1024 ** 2);
    expect(parseBytes('1.5G')).toBe(1.5 * GiB);
    expect(parseBytes('800MiB')).toBe(800 * 1024 ** 2);
    expect(parseBytes('64k')).toBe(65536);
    expect(parseBytes('1234')).toBe(1234);
    for (const bad of ['', '-1G', 'lots', '1X', '1e9']) expect(() => parseBytes(bad), bad).toThrow(/not a size/);
  });

  it('hands out bytes only while they fit', () => {
    const b = new CacheBudget(100);
    expect(b.tryReserve(60)).toBe(true);
    expect(b.tryReserve(50)).toBe(false);
    expect(b.inUse).toBe(60);
    b.take(50); // past the total: counted anyway
    expect(b.free).toBe(0);
    b.release(110);
    expect(b.tryReserve(100)).toBe(true);
    expect(b.peak).toBe(110);
    expect(() => new CacheBudget(-1)).toThrow();
  });
});

describe('row stores', () => {
  const shape = [2, 3];
  const rows = 7;
  const f32 = Float32Array.from({ length: rows * 6 }, (_, i) => Math.sin(i) * 1000);
  const f16 = toFloat16(f32);
  const blocks = (data: Float32Array | Uint16Array) =>
    [
      [0, 3],
      [3, 4],
      [4, 7],
    ].map(([s, e]) => ({ data: data.slice(s * 6, e * 6), shape, rows: e - s }));
  const idx = [6, 0, 3, 3, 5];

  for (const [name, data] of [
    ['float32', f32],
    ['float16', f16],
  ] as const) {
    it(`${name}: a spill file gives the same rows bit for bit as memory, and is removed on dispose`, async () => {
      const dir = await tmp();
      const memCache = cacheOf(GiB, dir);
      const diskCache = cacheOf(0, dir);
      const mem = new RowStoreBuilder(memCache, 'm', rows);
      const disk = new RowStoreBuilder(diskCache, 'd', rows);
      for (const b of blocks(data)) {
        mem.append(b);
        disk.append(b);
      }
      const [m, d] = [mem.finish(), disk.finish()];
      expect([m.onDisk, d.onDisk]).toEqual([false, true]);
      expect(memCache.budget.inUse).toBe(data.byteLength);
      expect(diskCache.spill.bytes).toBe(data.byteLength);
      const a = m.gather(idx);
      expect(new Uint32Array(d.gather(idx).buffer)).toEqual(new Uint32Array(a.buffer));
      expect(Array.from(a.subarray(0, 6))).toEqual(Array.from(m.float32().subarray(36, 42)));
      expect(new Uint32Array(d.float32().buffer)).toEqual(new Uint32Array(m.float32().buffer));
      m.dispose();
      d.dispose();
      expect(memCache.budget.inUse).toBe(0);
      expect(diskCache.spill.bytes).toBe(0);
      expect(() => d.gather([0])).toThrow(/disposed/);
      diskCache.spill.remove();
      expect(existsSync(diskCache.spill.folder ?? path.join(dir, 'none'))).toBe(false);
      expect(await readdir(dir)).toEqual([]);
    });
  }

  it('refuses more rows than announced, or fewer at the end', async () => {
    const b = new RowStoreBuilder(cacheOf(GiB, await tmp()), 'x', 2);
    b.append({ data: new Float32Array(6), shape, rows: 1 });
    expect(() => b.finish()).toThrow(/1 rows of 2/);
    expect(() => b.append({ data: new Float32Array(12), shape, rows: 2 })).toThrow(/more rows/);
  });
});

describe('decoded image sets', () => {
  it('decodes in order, skips broken files, and a spilled set reads back the same pixels', async () => {
    const dir = await tmp();
    const root = await makeDataset(path.join(dir, 'data'), { a: 5, b: 6 }, 30);
    await writeFile(path.join(root, 'a', 'broken.jpg'), 'not a jpeg');
    const { files } = await listDataset(root);
    const seen: number[] = [];
    const mem = new ImageSetBuilder(cacheOf(GiB, dir), 'm', 16, files.length);
    const disk = new ImageSetBuilder(cacheOf(0, dir), 'd', 16, files.length);
    let skipped = 0;
    for await (const r of decodeStream(files, { size: 16, concurrency: 3 })) {
      seen.push(r.index);
      expect(r.hash).toMatch(/^[0-9a-f]{64}$/);
      if (!r.image) {
        expect(r.file.relPath).toBe('a/broken.jpg');
        skipped++;
        continue;
      }
      mem.append(r.image);
      disk.append(r.image);
    }
    expect(seen).toEqual(files.map((_, i) => i));
    expect(skipped).toBe(1);
    const [m, d] = [mem.finish(), disk.finish()];
    expect([m.onDisk, d.onDisk, m.length, d.length]).toEqual([false, true, 11, 11]);
    expect(d.files).toEqual(m.files);
    expect(Array.from(d.labels)).toEqual(Array.from(m.labels));
    const [a, b] = [await m.read(3, 9), await d.read(3, 9)];
    expect(b.map((i) => i.file.relPath)).toEqual(a.map((i) => i.file.relPath));
    for (const [k, img] of b.entries()) expect(Buffer.from(img.data).equals(Buffer.from(a[k].data))).toBe(true);
    expect(await d.read(10, 99)).toHaveLength(1);
    d.dispose();
    await expect(d.read(0, 1)).rejects.toThrow(/disposed/);
  });
});

describe('spill folder', () => {
  it('is created on first use and removed by remove()', async () => {
    const dir = await tmp();
    const spill = new SpillArea(dir);
    expect(spill.folder).toBeUndefined();
    const f = spill.create('rows', 4);
    f.append(new Uint8Array([1, 2, 3, 4, 5, 6, 7, 8]));
    const out = new Uint8Array(4);
    f.readRow(1, out);
    expect(Array.from(out)).toEqual([5, 6, 7, 8]);
    expect(() => f.append(new Uint8Array(3))).toThrow(/whole rows/);
    expect(() => f.readRow(2, out)).toThrow(/out of/);
    const folder = spill.folder;
    expect(openSpillDirs()).toContain(folder);
    expect(spill.peak).toBe(8);
    spill.remove();
    expect(await readdir(dir)).toEqual([]);
    expect(openSpillDirs()).not.toContain(folder);
  });

  for (const signal of ['SIGINT', 'SIGTERM'] as const) {
    it(`is removed when the process gets ${signal}`, async () => {
      const dir = await tmp();
      const script = path.join(dir, 'child.ts');
      await writeFile(
        script,
        `import { SpillArea } from ${JSON.stringify(path.join(REPO_DIR, 'training/spill.ts'))};
const s = new SpillArea(${JSON.stringify(dir)});
s.create('x', 1).append(new Uint8Array(1000));
console.log(s.folder);
setInterval(() => {}, 1000);
`,
      );
      const child = spawn(process.execPath, ['--import', 'tsx', script], { cwd: REPO_DIR, stdio: ['ignore', 'pipe', 'inherit'] });
      const folder = await new Promise<string>((resolve) => child.stdout.once('data', (d) => resolve(String(d).trim())));
      expect(existsSync(folder)).toBe(true);
      const exited = new Promise<NodeJS.Signals | null>((resolve) => child.once('exit', (_code, sig) => resolve(sig)));
      child.kill(signal);
      expect(await exited).toBe(signal);
      expect(existsSync(folder)).toBe(false);
    }, 60_000);
  }
});

describe('--cache-budget', () => {
  it('is not a hyperparameter: it changes nothing in the results, nor the checkpoint run key', () => {
    const h = hyperparameters(resolveTrainOptions({ data: 'd', out: 'o', cacheBudget: 0, cacheDir: '/tmp' }));
    expect(h).not.toHaveProperty('cacheBudget');
    expect(h).not.toHaveProperty('cacheDir');
    expect(h).toHaveProperty('seed');
  });

  it('a bad size is refused with one clear line before anything runs', () => {
    const r = spawnSync(
      process.execPath,
      ['--import', 'tsx', 'cli/main.ts', 'train', '/nonexistent', '--out', '/tmp/x', '--cache-budget', 'lots'],
      {
        cwd: REPO_DIR,
        encoding: 'utf8',
      },
    );
    expect(r.status).not.toBe(0);
    expect(r.stderr).toMatch(/not a size: 'lots'/);
  }, 60_000);
});
