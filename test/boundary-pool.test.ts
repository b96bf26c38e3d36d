import { readdirSync, readFileSync } from 'node:fs';
import os from 'node:os';
import type { LayersModel, Tensor } from '@tensorflow/tfjs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { initBackend } from '../core/backend.js';
import { buildMobileNetV2 } from '../core/mobilenet-v2.js';
import { tf } from '../core/tf.js';
import { type AugmentDraw, applyAugmentation } from '../training/augment.js';
import { fromFloat16, toFloat16 } from '../training/workers/boundary-float16.js';
import { type BoundaryPool, createBoundaryPool } from '../training/workers/boundary-pool.js';
import { type BoundaryWeights, createBoundaryRunner } from '../training/workers/boundary-runner.js';
import { randomizeBatchNorm, weightsOf } from './helpers/fast-forward-fixtures.js';

const SIZE = 64;
const ALPHA = 0.35;
const BOUNDARY = 'block_13_expand_relu';

function image(seed: number): Uint8Array {
  return new Uint8Array(SIZE * SIZE * 3).map((_, i) => (i * 31 + seed * 17 + ((i * seed) >> 5)) % 256);
}

const DRAWS: AugmentDraw[] = [
  { flipH: true, flipV: false, angle: 0.2, zoom: 1.1, contrast: 1.3 },
  { flipH: false, flipV: true, angle: -0.4, zoom: 0.85, contrast: 0.8 },
  { flipH: false, flipV: false, angle: 0, zoom: 1, contrast: 1 },
];

let model: LayersModel;
let weights: BoundaryWeights;
let pool: BoundaryPool;
const images = [image(1), image(2), image(3)];

beforeAll(async () => {
  await initBackend('wasm', () => {});
  model = buildMobileNetV2({ alpha: ALPHA, inputSize: SIZE });
  randomizeBatchNorm(model);
  weights = await weightsOf(model);
  pool = await createBoundaryPool({ weights, alpha: ALPHA, inputSize: SIZE, workers: 2, dtype: 'float32', batchSize: 2 });
});

afterAll(async () => {
  await pool?.close();
  model?.dispose();
});

describe('boundary runner (in-process)', () => {
  it('equals the layers model at the boundary on augmented views, and does not leak', async () => {
    const runner = createBoundaryRunner(weights, { alpha: ALPHA, inputSize: SIZE, batchSize: 2 });
    const before = tf.memory().numTensors;
    const out = await runner.run({ pixels: images[0], views: DRAWS }, 'float32');
    expect(tf.memory().numTensors).toBe(before);
    expect(out.shape).toEqual([3, 4, 4, 192]);
    const sub = tf.model({ inputs: model.inputs, outputs: model.getLayer(BOUNDARY).output as tf.SymbolicTensor });
    const px = DRAWS.map((d) => applyAugmentation({ data: images[0], width: SIZE, height: SIZE }, d));
    const ref = tf.tidy(() => {
      const x = tf.tensor4d(Float32Array.from(px.flatMap((p) => Array.from(p))), [3, SIZE, SIZE, 3]);
      return sub.predict(x.div(127.5).sub(1)) as Tensor;
    });
    const refData = ref.dataSync();
    ref.dispose();
    let maxDiff = 0;
    for (let i = 0; i < refData.length; i++) maxDiff = Math.max(maxDiff, Math.abs(refData[i] - out.data[i]));
    expect(maxDiff).toBeLessThan(1e-4);
    runner.dispose();
  });

  it('rejects jobs with partial images or mismatched views', async () => {
    const runner = createBoundaryRunner(weights, { alpha: ALPHA, inputSize: SIZE });
    await expect(runner.run({ pixels: new Uint8Array(100), views: null })).rejects.toThrow(/whole 64x64x3 images/);
    const two = new Uint8Array(SIZE * SIZE * 3 * 2);
    await expect(runner.run({ pixels: two, views: DRAWS })).rejects.toThrow(/2 images need 2 views/);
    runner.dispose();
  });

  it('refuses weights of another alpha', () => {
    expect(() => createBoundaryRunner(weights, { alpha: 1.0, inputSize: SIZE })).toThrow(
      /alpha 0.35 but the model is alpha 1.0[\s\S]*Shape mismatch/,
    );
  });
});

describe('boundary pool (2 worker threads)', () => {
  it('returns the same activations as the in-process forward, in job order', async () => {
    const jobs = [
      { pixels: images[0], views: DRAWS },
      { pixels: new Uint8Array([...images[1], ...images[2]]), views: null },
      { pixels: images[2], views: [DRAWS[1]] },
    ];
    const seen: number[] = [];
    const results = await pool.run(jobs, (done, total) => {
      expect(total).toBe(6);
      seen.push(done);
    });
    expect(seen.at(-1)).toBe(6);
    expect(results.map((r) => r.index)).toEqual([0, 1, 2]);
    const runner = createBoundaryRunner(weights, { alpha: ALPHA, inputSize: SIZE, batchSize: 2 });
    for (const [i, job] of jobs.entries()) {
      const local = await runner.run(job, 'float32');
      expect(results[i].shape).toEqual(local.shape);
      expect(results[i].dtype).toBe('float32');
      let maxDiff = 0;
      for (let k = 0; k < local.data.length; k++) maxDiff = Math.max(maxDiff, Math.abs(local.data[k] - results[i].data[k]));
      expect(maxDiff).toBeLessThan(1e-6);
    }
    runner.dispose();
    expect(pool.rowShape).toEqual([4, 4, 192]);
    expect(pool.workers).toBe(2);
  });

  it.runIf(process.platform === 'linux')('runs its workers at nice 19 (their threads only) unless told not to', async () => {
    // Nice value of each thread of this process (field 19 of /proc/<pid>/task/<tid>/stat).
    const niced = () =>
      readdirSync('/proc/self/task').filter((t) => {
        try {
          return readFileSync(`/proc/self/task/${t}/stat`, 'utf8').split(') ')[1].split(' ')[16] === '19';
        } catch {
          return false; // a thread that ended meanwhile
        }
      }).length;
    expect(os.getPriority()).toBe(0);
    const start = niced();
    const normal = await createBoundaryPool({ weights, alpha: ALPHA, inputSize: SIZE, workers: 1, background: false });
    expect(niced()).toBe(start);
    await normal.close();
    const low = await createBoundaryPool({ weights, alpha: ALPHA, inputSize: SIZE, workers: 2 });
    expect(niced()).toBeGreaterThanOrEqual(start + 2);
    expect(os.getPriority()).toBe(0);
    await low.close();
  });

  it('reports a bad job as an error', async () => {
    await expect(pool.run([{ pixels: new Uint8Array(5), views: null }])).rejects.toThrow(/whole 64x64x3 images/);
  });

  it('returns float16 when asked, equal to the float32 activations rounded', async () => {
    const p16 = await createBoundaryPool({ weights, alpha: ALPHA, inputSize: SIZE, workers: 1 });
    const job = { pixels: images[1], views: [DRAWS[0]] };
    const [h] = await p16.run([job]);
    const [f] = await pool.run([job]);
    expect(h.dtype).toBe('float16');
    expect(h.data).toBeInstanceOf(Uint16Array);
    expect(Array.from(h.data)).toEqual(Array.from(toFloat16(f.data as Float32Array)));
    expect(fromFloat16(h.data as Uint16Array).length).toBe(f.data.length);
    await p16.close();
    await expect(p16.run([job])).rejects.toThrow(/closed/);
  });

  it('serves concurrent runs that share the queue places (inFlight 1): each gets all its results', async () => {
    const p1 = await createBoundaryPool({ weights, alpha: ALPHA, inputSize: SIZE, workers: 1, dtype: 'float32', inFlight: 1 });
    try {
      const a = [0, 1, 2].map((i) => ({ pixels: images[i], views: null }));
      const b = [2, 0].map((i) => ({ pixels: images[i], views: [DRAWS[i]] }));
      const [ra, rb] = await Promise.all([p1.run(a), p1.run(b)]);
      expect(ra.map((r) => r.index)).toEqual([0, 1, 2]);
      expect(rb.map((r) => r.index)).toEqual([0, 1]);
      const [sa, sb] = [await pool.run(a), await pool.run(b)];
      for (const [got, want] of [...ra.map((r, i) => [r, sa[i]]), ...rb.map((r, i) => [r, sb[i]])]) {
        expect(got.data).toEqual(want.data);
      }
    } finally {
      await p1.close();
    }
  });

  it('runs in-process with workers: 0', async () => {
    const p0 = await createBoundaryPool({ weights, alpha: ALPHA, inputSize: SIZE, workers: 0, dtype: 'float32' });
    const [r] = await p0.run([{ pixels: images[0], views: null }]);
    expect(r.shape).toEqual([1, 4, 4, 192]);
    await p0.close();
  });
});

describe('several layers in one pass', () => {
  const OUT = 'out_relu';
  const single = async (layer: string, dtype: 'float16' | 'float32', job: { pixels: Uint8Array; views: (AugmentDraw | null)[] | null }) => {
    const r = createBoundaryRunner(weights, { alpha: ALPHA, inputSize: SIZE, batchSize: 2, boundaryLayer: layer });
    try {
      return await r.run(job, dtype);
    } finally {
      r.dispose();
    }
  };

  it.each([BOUNDARY, 'block_13_pad', 'block_12_add', 'block_15_project_BN'])(
    'runner: %s and out_relu from one job equal two single-layer runs bit for bit',
    async (layer) => {
      const runner = createBoundaryRunner(weights, {
        alpha: ALPHA,
        inputSize: SIZE,
        batchSize: 2,
        boundaryLayer: layer,
        extraLayers: [OUT],
      });
      const job = { pixels: images[0], views: DRAWS };
      const before = tf.memory().numTensors;
      // Deeper layer first: outputs come back in request order whatever the depth order.
      const out = await runner.run({
        ...job,
        outputs: [
          { layer: OUT, dtype: 'float32' },
          { layer, dtype: 'float16' },
        ],
      });
      expect(tf.memory().numTensors).toBe(before);
      expect(out.outputs.map((o) => [o.layer, o.dtype])).toEqual([
        [OUT, 'float32'],
        [layer, 'float16'],
      ]);
      expect(out.data).toBe(out.outputs[0].data);
      const pooled = await single(OUT, 'float32', job);
      const boundary = await single(layer, 'float16', job);
      expect(out.outputs[0].shape).toEqual(pooled.shape);
      expect(out.outputs[0].data).toEqual(pooled.data);
      expect(out.outputs[1].shape).toEqual(boundary.shape);
      expect(out.outputs[1].data).toEqual(boundary.data);
      // Without `outputs`, the boundary alone in the run's dtype, as before.
      const plain = await runner.run(job, 'float16');
      expect(plain.outputs.map((o) => o.layer)).toEqual([layer]);
      expect(plain.data).toEqual(boundary.data);
      expect(runner.rowShapes[OUT]).toEqual([2, 2, 1280]);
      runner.dispose();
    },
  );

  it('runner rejects layers it was not built for, and duplicates', async () => {
    const runner = createBoundaryRunner(weights, { alpha: ALPHA, inputSize: SIZE, extraLayers: [OUT] });
    const job = { pixels: images[0], views: null };
    await expect(runner.run({ ...job, outputs: [{ layer: 'block_5_add', dtype: 'float32' }] })).rejects.toThrow(/not one of this runner/);
    await expect(
      runner.run({
        ...job,
        outputs: [
          { layer: OUT, dtype: 'float32' },
          { layer: OUT, dtype: 'float16' },
        ],
      }),
    ).rejects.toThrow(/twice/);
    runner.dispose();
  });

  it('pool workers return every requested layer, equal to the in-process runner', async () => {
    const opts = { weights, alpha: ALPHA, inputSize: SIZE, batchSize: 2, extraLayers: [OUT] };
    const p2 = await createBoundaryPool({ ...opts, workers: 2 });
    const runner = createBoundaryRunner(weights, opts);
    try {
      expect(p2.rowShapes).toEqual({ [BOUNDARY]: [4, 4, 192], [OUT]: [2, 2, 1280] });
      const outputs = [
        { layer: BOUNDARY, dtype: 'float16' as const },
        { layer: OUT, dtype: 'float32' as const },
      ];
      const jobs = [
        { pixels: images[0], views: DRAWS, outputs },
        { pixels: new Uint8Array([...images[1], ...images[2]]), views: null, outputs },
      ];
      const got = await p2.run(jobs);
      for (const [i, job] of jobs.entries()) {
        const want = await runner.run(job);
        expect(got[i].outputs.map((o) => o.layer)).toEqual([BOUNDARY, OUT]);
        for (let k = 0; k < 2; k++) expect(got[i].outputs[k].data).toEqual(want.outputs[k].data);
      }
    } finally {
      runner.dispose();
      await p2.close();
    }
  });
});
