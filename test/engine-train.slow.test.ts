// Training with the frozen-layer workers on onnxruntime (EDGETUNE_ENGINE=ort): a run is reproducible
// bit for bit for a given engine, machine and thread setting, and the manifest records the engine and
// the CPU's instruction set.
import { createHash } from 'node:crypto';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { initBackend } from '../core/backend.js';
import { ManifestSchema } from '../core/manifest.js';
import { runTraining } from '../training/job.js';
import { resolveTrainOptions } from '../training/options.js';
import { makeDataset } from './helpers/images.js';

describe('edgetune train with --engine ort (tiny)', () => {
  let dir: string;
  let root: string;
  const saved = { engine: process.env.EDGETUNE_ENGINE, offline: process.env.EDGETUNE_OFFLINE, base: process.env.EDGETUNE_BASE_WEIGHTS };

  beforeAll(async () => {
    process.env.EDGETUNE_OFFLINE = '1';
    delete process.env.EDGETUNE_BASE_WEIGHTS;
    process.env.EDGETUNE_ENGINE = 'ort';
    await initBackend();
    dir = await mkdtemp(path.join(os.tmpdir(), 'edgetune-engine-train-'));
    root = await makeDataset(path.join(dir, 'data'), { red: 10, blue: 10 }, 40);
  }, 60_000);
  afterAll(async () => {
    for (const [k, v] of [
      ['EDGETUNE_ENGINE', saved.engine],
      ['EDGETUNE_OFFLINE', saved.offline],
      ['EDGETUNE_BASE_WEIGHTS', saved.base],
    ] as const) {
      if (v === undefined) delete process.env[k];
      else process.env[k] = v;
    }
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  const trainOnce = async (name: string) => {
    const out = path.join(dir, name);
    const opts = resolveTrainOptions({
      data: root,
      out,
      imageSize: 32,
      batchSize: 8,
      epochs: 2,
      fineTuneEpochs: 1,
      fineTuneAt: 120,
      workers: 1,
      rotation: 0.1,
    });
    const { model } = await runTraining(opts, () => {});
    model.dispose();
    return out;
  };

  it('gives the same weights.bin twice and records the engine and the CPU in the manifest', async () => {
    const a = await trainOnce('a');
    const b = await trainOnce('b');
    const sha = async (d: string) =>
      createHash('sha256')
        .update(await readFile(path.join(d, 'weights.bin')))
        .digest('hex');
    expect(await sha(b)).toBe(await sha(a));
    const manifest = ManifestSchema.parse(JSON.parse(await readFile(path.join(a, 'manifest.json'), 'utf8')));
    expect(manifest.engine?.frozenLayers).toMatch(/^1 worker threads, each onnxruntime-node \S+ \(CPU, 1 intra-op thread\)$/);
    expect(manifest.engine?.cpu.arch).toBe(process.arch);
    if (process.platform === 'linux' && process.arch === 'x64') expect(manifest.engine?.cpu.isa).toContain('avx2');
  }, 300_000);
});
