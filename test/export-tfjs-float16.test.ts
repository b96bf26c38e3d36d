import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { initBackend } from '../core/backend.js';
import { buildClassifier } from '../core/classifier.js';
import { exportFormats, tfjsProbabilities } from '../core/export/export-formats.js';
import type { Manifest, Verification } from '../core/manifest.js';
import { artifactsFromModelJson } from '../core/model-json.js';
import { type LayersModel, tf } from '../core/tf.js';
import { randomizeBatchNorm } from './helpers/fast-forward-fixtures.js';

const SIZE = 64;
let dir: string;
let model: LayersModel;

function pixels(n: number, seed: number): Uint8Array {
  let s = seed;
  return new Uint8Array(n * SIZE * SIZE * 3).map(() => {
    s = (s * 1103515245 + 12345) >>> 0;
    return s >>> 24;
  });
}

beforeAll(async () => {
  await initBackend('wasm', () => {});
  dir = await mkdtemp(path.join(tmpdir(), 'edgetune-tfjs16-'));
  model = buildClassifier({ alpha: 0.35, inputSize: SIZE, numClasses: 3, seed: 5 });
  randomizeBatchNorm(model, 3);
});
afterAll(async () => {
  model?.dispose();
  await rm(dir, { recursive: true, force: true });
});

describe('tfjs-float16 export', () => {
  it('writes a tfjs layers model with float16 weights (half the bytes), verified in tfjs within 1e-2, same bytes every time', async () => {
    const px = pixels(6, 3);
    const verification: Verification = {
      shape: [6, SIZE, SIZE, 3],
      pixels: Buffer.from(px).toString('base64'),
      labels: [0, 1, 2, 0, 1, 2],
      probabilities: [],
    };
    const manifest = {
      name: 'unit',
      version: '20261201T000000Z-00000000',
      classes: ['a', 'b', 'c'],
      input: { size: SIZE, channels: 3, resize: 'stretch' },
      preprocessing: { scale: 1 / 127.5, offset: -1, inModel: true },
    } as Manifest;
    const before = tf.memory().numTensors;
    const ex = await exportFormats(model, manifest, ['tfjs-float16'], { outDir: dir, verification });
    expect(tf.memory().numTensors).toBe(before);
    const rec = ex.exports[0];
    expect(rec.files.map((f) => f.path)).toEqual(['tfjs-float16/model.json', 'tfjs-float16/weights.bin']);
    expect(rec.verification.maxAbsDiff).toBeLessThan(1e-2);
    expect(rec.verification.top1Agreement).toBe(1);
    expect(rec.runtime).toMatch(/^tfjs \d/);

    // The shared float16 rule: float16 kernels but for depthwise and small linear convs; BatchNorm and biases float32.
    const json = JSON.parse(await readFile(path.join(dir, 'tfjs-float16/model.json'), 'utf8'));
    const specs = json.weightsManifest[0].weights as Array<{ name: string; shape: number[]; quantization?: { dtype: string } }>;
    const dtypeOf = (name: string) => specs.find((s) => s.name === name)?.quantization?.dtype ?? 'float32';
    expect(dtypeOf('block_16_expand/kernel')).toBe('float16');
    expect(dtypeOf('Conv_1/kernel')).toBe('float16');
    expect(dtypeOf('block_1_project/kernel')).toBe('float32');
    expect(dtypeOf('block_16_depthwise/depthwise_kernel')).toBe('float32');
    expect(dtypeOf('block_16_expand_BN/gamma')).toBe('float32');
    const f32Bytes = model.getWeights().reduce((a, w) => a + w.size * 4, 0);
    const half = specs.filter((s) => s.quantization).reduce((a, s) => a + s.shape.reduce((x, y) => x * y, 1) * 2, 0);
    expect(rec.files[1].bytes).toBe(f32Bytes - half);
    // alpha 0.35 keeps relatively more in small convs than alpha 1.0 (0.71 here; ONNX/TFLite alpha 1.0: 0.58).
    expect(rec.files[1].bytes).toBeLessThan(f32Bytes * 0.75);

    // Loaded from disk by tfjs' own loader path (model.json + the shard it names), it predicts what the record says.
    const artifacts = await artifactsFromModelJson(json, (p) => readFile(path.join(dir, 'tfjs-float16', p)));
    const loaded = await tf.loadLayersModel(tf.io.fromMemory(artifacts));
    const got = await tfjsProbabilities(loaded, { pixels: px, shape: [6, SIZE, SIZE, 3] }, 3);
    const ref = await tfjsProbabilities(model, { pixels: px, shape: [6, SIZE, SIZE, 3] }, 3);
    loaded.dispose();
    const d = Math.max(...got.flatMap((r, i) => r.map((v, j) => Math.abs(v - ref[i][j]))));
    expect(d).toBeCloseTo(rec.verification.maxAbsDiff, 6);

    const again = await exportFormats(model, manifest, ['tfjs-float16'], { outDir: dir, verification });
    expect(again.exports[0].files.map((f) => f.sha256)).toEqual(rec.files.map((f) => f.sha256));
  });
});
