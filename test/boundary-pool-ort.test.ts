// The boundary pool on the ort engine: the pool writes the frozen layers' ONNX once and its workers
// open sessions on those bytes without loading tfjs; workers and the in-thread runner agree bit for bit.
import type { LayersModel } from '@tensorflow/tfjs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { initBackend } from '../core/backend.js';
import { ortUnavailable } from '../core/engine/engine.js';
import { buildMobileNetV2 } from '../core/mobilenet-v2.js';
import type { AugmentDraw } from '../training/augment.js';
import { fromFloat16 } from '../training/workers/boundary-float16.js';
import { createBoundaryPool } from '../training/workers/boundary-pool.js';
import { type BoundaryWeights, createBoundaryRunner } from '../training/workers/boundary-runner.js';
import { randomizeBatchNorm, weightsOf } from './helpers/fast-forward-fixtures.js';

const SIZE = 64;
const ALPHA = 0.35;
const BOUNDARY = 'block_13_expand_relu';
const OUT = 'out_relu';

const noOrt = await ortUnavailable();
if (noOrt) console.warn(`skipping the ort boundary pool tests: ${noOrt}`);

const image = (seed: number) => new Uint8Array(SIZE * SIZE * 3).map((_, i) => (i * 29 + seed * 53 + ((i * seed) >> 4)) % 256);
const DRAWS: AugmentDraw[] = [
  { flipH: true, flipV: false, angle: 0.3, zoom: 1.15, contrast: 1.2 },
  { flipH: false, flipV: true, angle: -0.2, zoom: 0.9, contrast: 0.7 },
  { flipH: false, flipV: false, angle: 0, zoom: 1, contrast: 1 },
];
const outputs = [
  { layer: BOUNDARY, dtype: 'float16' as const },
  { layer: OUT, dtype: 'float32' as const },
];
const jobs = () => [
  { pixels: image(1), views: DRAWS, outputs },
  { pixels: new Uint8Array([...image(2), ...image(3)]), views: null, outputs },
  { pixels: new Uint8Array([...image(4), ...image(5)]), views: [DRAWS[1], null], outputs },
  { pixels: image(6), views: [DRAWS[0]], outputs },
];

describe.skipIf(noOrt)('boundary pool on the ort engine', () => {
  let model: LayersModel;
  let weights: BoundaryWeights;
  const opts = () => ({ weights, alpha: ALPHA, inputSize: SIZE, batchSize: 2, extraLayers: [OUT], engine: 'ort' as const });

  beforeAll(async () => {
    await initBackend('wasm', () => {});
    model = buildMobileNetV2({ alpha: ALPHA, inputSize: SIZE });
    randomizeBatchNorm(model);
    weights = await weightsOf(model);
  });
  afterAll(() => model?.dispose());

  it('its workers run onnxruntime without loading tfjs (the wasm workers do load it)', async () => {
    const ort = await createBoundaryPool({ ...opts(), workers: 2 });
    const wasm = await createBoundaryPool({ ...opts(), engine: 'wasm', workers: 1 });
    try {
      expect(ort.backend).toMatch(/^2 worker threads, each onnxruntime-node .* \(CPU, 1 intra-op thread\)$/);
      expect(ort.tfjsWorkers).toBe(0);
      expect(wasm.backend).toMatch(/each wasm/);
      expect(wasm.tfjsWorkers).toBe(1);
      const [r] = await ort.run([{ pixels: image(1), views: null }]);
      expect(r.shape).toEqual([1, 4, 4, 192]);
    } finally {
      await Promise.all([ort.close(), wasm.close()]);
    }
  });

  it('workers and the in-thread pool (workers: 0) return the same activations bit for bit', async () => {
    const p2 = await createBoundaryPool({ ...opts(), workers: 2, inFlight: Number.POSITIVE_INFINITY });
    const p0 = await createBoundaryPool({ ...opts(), workers: 0 });
    try {
      expect(p0.backend).toMatch(/^in-process \(this thread\), onnxruntime-node/);
      expect(p2.rowShapes).toEqual({ [BOUNDARY]: [4, 4, 192], [OUT]: [2, 2, 1280] });
      expect(p0.rowShapes).toEqual(p2.rowShapes);
      const [inWorkers, inThread] = [await p2.run(jobs()), await p0.run(jobs())];
      for (const [i, want] of inThread.entries()) {
        const got = inWorkers[i];
        expect(got.outputs.map((o) => [o.layer, o.dtype, o.shape])).toEqual(want.outputs.map((o) => [o.layer, o.dtype, o.shape]));
        expect(got.outputs[0].data).toBeInstanceOf(Uint16Array);
        expect(got.outputs[1].data).toBeInstanceOf(Float32Array);
        for (let k = 0; k < 2; k++)
          expect(Buffer.from(got.outputs[k].data.buffer).equals(Buffer.from(want.outputs[k].data.buffer))).toBe(true);
      }
    } finally {
      await Promise.all([p2.close(), p0.close()]);
    }
  });

  it('agrees with the wasm engine within float16 rounding', async () => {
    const p = await createBoundaryPool({ ...opts(), workers: 1 });
    const runner = createBoundaryRunner(weights, { alpha: ALPHA, inputSize: SIZE, extraLayers: [OUT] });
    try {
      const [job] = jobs();
      const [got] = await p.run([job]);
      const want = await runner.run(job);
      const [a, b] = [fromFloat16(got.outputs[0].data as Uint16Array), fromFloat16(want.outputs[0].data as Uint16Array)];
      let max = 0;
      let scale = 0;
      for (let i = 0; i < a.length; i++) {
        max = Math.max(max, Math.abs(a[i] - b[i]));
        scale = Math.max(scale, Math.abs(b[i]));
      }
      expect(scale).toBeGreaterThan(0.1);
      // One float16 step at the top of the activations' range (2^-10 relative), and a little float32 slack.
      expect(max).toBeLessThanOrEqual(scale * 2 ** -10 + 1e-4);
    } finally {
      runner.dispose();
      await p.close();
    }
  });

  it('refuses weights of another alpha before any worker starts', async () => {
    await expect(createBoundaryPool({ ...opts(), alpha: 1.0, workers: 2 })).rejects.toThrow(
      /alpha 0.35 but the model is alpha 1.0[\s\S]*Shape mismatch/,
    );
  });
});
