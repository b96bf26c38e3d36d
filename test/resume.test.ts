import { type ChildProcess, spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, readFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { createInterface } from 'node:readline';
import { describe, expect, it } from 'vitest';
import { ManifestSchema } from '../core/manifest.js';
import { makeDataset } from './helpers/images.js';
import { REPO_DIR } from './helpers/shared.js';

interface Event {
  type: string;
  phase?: string;
  epoch?: number;
  message?: string;
}

function trainProcess(args: string[], onEvent: (e: Event, child: ChildProcess) => void): Promise<number | null> {
  const child = spawn(process.execPath, [path.join(REPO_DIR, 'bin/edgetune.mjs'), 'train', ...args, '--json'], {
    env: { ...process.env, EDGETUNE_OFFLINE: '1', EDGETUNE_BASE_WEIGHTS: '' },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  createInterface({ input: child.stdout! }).on('line', (line) => {
    try {
      onEvent(JSON.parse(line) as Event, child);
    } catch {
      // not an event line
    }
  });
  return new Promise((resolve) => child.on('exit', (code) => resolve(code)));
}

describe('checkpoint and resume (Spot interruption)', () => {
  it('a training process killed mid-run resumes after the last finished epoch', async () => {
    const dir = await mkdtemp(path.join(os.tmpdir(), 'edgetune-resume-'));
    const data = await makeDataset(path.join(dir, 'data'), { cat: 12, dog: 12 }, 36);
    const ckpt = path.join(dir, 'ckpt');
    const args = [
      data,
      '--out',
      path.join(dir, 'model'),
      '--image-size',
      '32',
      '--batch-size',
      '8',
      '--epochs',
      '3',
      '--fine-tune-epochs',
      '3',
      '--workers',
      '0',
      '--checkpoint',
      ckpt,
    ];

    // First run: killed (SIGKILL, like a reclaimed Spot host) right after its first fine-tuning epoch.
    const first: Event[] = [];
    const code = await trainProcess(args, (e, child) => {
      first.push(e);
      if (e.type === 'epoch' && e.phase === 'fineTune') child.kill('SIGKILL');
    });
    expect(code).toBeNull();
    expect(first.filter((e) => e.type === 'epoch').map((e) => e.epoch)).toEqual([1, 2, 3, 4]);
    expect(existsSync(path.join(ckpt, 'checkpoint.bin'))).toBe(true);
    expect(existsSync(path.join(dir, 'model', 'manifest.json'))).toBe(false);

    // Retry: resumes at epoch 5 and finishes.
    const second: Event[] = [];
    expect(await trainProcess(args, (e) => second.push(e))).toBe(0);
    expect(second.some((e) => e.type === 'info' && /resuming from the checkpoint.*4 epoch/.test(e.message ?? ''))).toBe(true);
    expect(second.filter((e) => e.type === 'epoch').map((e) => e.epoch)).toEqual([5, 6]);
    const manifest = ManifestSchema.parse(JSON.parse(await readFile(path.join(dir, 'model', 'manifest.json'), 'utf8')));
    expect(manifest.history.map((h) => h.epoch)).toEqual([1, 2, 3, 4, 5, 6]);
    expect(existsSync(path.join(ckpt, 'checkpoint.bin'))).toBe(false);
  }, 240_000);
});
