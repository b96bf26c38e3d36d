import { execFile } from 'node:child_process';
import { mkdtemp, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { afterAll, describe, expect, it } from 'vitest';

const exec = promisify(execFile);
const BIN = path.resolve('bin/edgetune.mjs');
let dir = '';
afterAll(async () => {
  if (dir) await rm(dir, { recursive: true, force: true });
});

describe('edgetune demo-data', () => {
  it('writes the dataset and reports what it wrote; refuses a non-empty folder with one clear line and exit code 1', async () => {
    dir = await mkdtemp(path.join(tmpdir(), 'edgetune-demo-cli-'));
    const out = path.join(dir, 'shapes');
    const { stdout } = await exec(process.execPath, [
      BIN,
      'demo-data',
      out,
      '--classes',
      '3',
      '--per-class',
      '4',
      '--size',
      '40',
      '--seed',
      '3',
      '--json',
    ]);
    const r = JSON.parse(stdout);
    expect(r).toMatchObject({
      root: out,
      classes: ['circles', 'squares', 'triangles'],
      images: 12,
      counts: { circles: 4, squares: 4, triangles: 4 },
    });
    expect((await readdir(out)).sort()).toEqual(['circles', 'squares', 'triangles']);
    expect(await readdir(path.join(out, 'squares'))).toHaveLength(4);

    const again = await exec(process.execPath, [BIN, 'demo-data', out]).then(
      () => ({ code: 0, stderr: '' }),
      (e: { code: number; stderr: string }) => e,
    );
    expect(again.code).toBe(1);
    expect(again.stderr).toMatch(/not empty/);
  });
});
