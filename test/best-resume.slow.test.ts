import { type ChildProcess, spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
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
}

function trainProcess(args: string[], onEvent: (e: Event, child: ChildProcess) => void = () => {}): Promise<number | null> {
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

const sha = async (f: string) =>
  createHash('sha256')
    .update(await readFile(f))
    .digest('hex');

describe('--restore-best / --patience across a Spot interruption', () => {
  it('killed mid-run and resumed, the run keeps the same epochs and writes the same weights.bin as uninterrupted', async () => {
    const dir = await mkdtemp(path.join(os.tmpdir(), 'edgetune-best-resume-'));
    const data = await makeDataset(path.join(dir, 'data'), { cat: 10, dog: 10 }, 36);
    const common = [
      data,
      '--image-size',
      '32',
      '--batch-size',
      '8',
      '--epochs',
      '4',
      '--fine-tune-epochs',
      '3',
      '--workers',
      '0',
      '--restore-best',
      '--patience',
      '2',
      '--test-split',
      '0.2',
    ];
    const whole = path.join(dir, 'whole');
    expect(await trainProcess([...common, '--out', whole])).toBe(0);

    const resumed = path.join(dir, 'resumed');
    const args = [...common, '--out', resumed, '--checkpoint', path.join(dir, 'ckpt')];
    const code = await trainProcess(args, (e, child) => {
      if (e.type === 'epoch' && e.phase === 'fineTune') child.kill('SIGKILL');
    });
    expect(code).toBeNull();
    expect(await trainProcess(args)).toBe(0);

    expect(await sha(path.join(resumed, 'weights.bin'))).toBe(await sha(path.join(whole, 'weights.bin')));
    const a = ManifestSchema.parse(JSON.parse(await readFile(path.join(whole, 'manifest.json'), 'utf8')));
    const b = ManifestSchema.parse(JSON.parse(await readFile(path.join(resumed, 'manifest.json'), 'utf8')));
    expect(a.selection?.frozen).toBeDefined();
    expect(a.selection?.fineTune).toBeDefined();
    expect(b.selection).toEqual(a.selection);
    expect(b.metrics).toEqual(a.metrics);
    expect(a.metrics.test?.perClass.reduce((n, c) => n + c.support, 0)).toBe(a.dataset.counts.test);
    // The kept epoch's figures are the phase's metrics.
    const kept = a.history.find((h) => h.epoch === a.selection?.fineTune?.keptEpoch);
    expect(kept?.valLoss).toBe(a.metrics.fineTuned?.valLoss);
  }, 240_000);
});
