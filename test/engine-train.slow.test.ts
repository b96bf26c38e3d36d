// Training with the frozen-layer workers on onnxruntime (EDGETUNE_ENGINE=ort): a run is reproducible
// bit for bit for a given engine, machine and thread setting, and the manifest records the engine and
// the CPU's instruction set; without --engine training picks onnxruntime (auto).
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

  const trainOnce = async (name: string, report: (e: { type: string; message?: string }) => void = () => {}) => {
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
    const { model } = await runTraining(opts, report);
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
    expect(manifest.engine?.tail).toMatch(/1x1 products on onnxruntime-node/);
    expect(manifest.engine?.cpu.arch).toBe(process.arch);
    if (process.platform === 'linux' && process.arch === 'x64') expect(manifest.engine?.cpu.isa).toContain('avx2');
  }, 300_000);

  it('without --engine picks onnxruntime (auto) and says so; --engine wasm keeps tfjs', async () => {
    const messages: string[] = [];
    delete process.env.EDGETUNE_ENGINE;
    try {
      const auto = await trainOnce('auto', (e) => e.message && messages.push(e.message));
      process.env.EDGETUNE_ENGINE = 'wasm';
      const wasm = await trainOnce('wasm', (e) => e.message && messages.push(e.message));
      const engineOf = async (d: string) => ManifestSchema.parse(JSON.parse(await readFile(path.join(d, 'manifest.json'), 'utf8'))).engine;
      expect((await engineOf(auto))?.frozenLayers).toMatch(/^1 worker threads, each onnxruntime-node \S+ \(CPU, 1 intra-op thread\)$/);
      expect((await engineOf(wasm))?.frozenLayers).toMatch(/^1 worker threads, each wasm \(SIMD, 1 thread\)$/);
      expect((await engineOf(auto))?.tail).toMatch(/1x1 products on onnxruntime-node/);
      expect((await engineOf(wasm))?.tail).toBe('tfjs wasm (1x1 products on XNNPACK)');
      expect(messages.filter((m) => m.startsWith('fine-tune step:'))).toEqual([
        'fine-tune step: fast tail on 1 thread(s), 1x1 products on onnxruntime',
        'fine-tune step: fast tail on 1 thread(s), 1x1 products on tfjs wasm',
      ]);
      expect(messages.filter((m) => m.startsWith('frozen layers:'))).toEqual([
        'frozen layers: 1 worker threads on onnxruntime-node (CPU, 1 intra-op thread each)',
        'frozen layers: 1 worker threads on tfjs wasm',
      ]);
    } finally {
      process.env.EDGETUNE_ENGINE = 'ort';
    }
  }, 300_000);
});
