// Serving on onnxruntime (EDGETUNE_ENGINE=ort) against serving on tfjs: the same API answers on the
// same weights for real photos (top-1 identical, probabilities within 1e-4), for a softmax and a
// sigmoid (2-class) head, and for a model with a temperature and open-set class means (calibrated
// probabilities from the logits, the unknown decision from the pooled embedding, on each engine).
import { mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { initBackend } from '../core/backend.js';
import { HEAD } from '../core/classifier.js';
import { createFastForward } from '../core/fast-forward.js';
import { decodeImage } from '../core/image.js';
import { loadModel } from '../core/model-loader.js';
import { encodeFloat32 } from '../core/open-set-score.js';
import { tf } from '../core/tf.js';
import { configFromEnv } from '../functions/config.js';
import { memoryLogger } from '../functions/logger.js';
import { createRuntime } from '../functions/runtime.js';
import { makeModelDir } from './helpers/model-dir.js';
import { ALPACA_DIR, hasAlpaca, skipReason } from './helpers/shared.js';
import { makePhoto } from './helpers/tiny-model.js';

const TOL = 1e-4;
const quiet = () => {};

async function runtimeOn(dir: string, engine: 'wasm' | 'ort') {
  const log = memoryLogger();
  const before = process.env.EDGETUNE_ENGINE;
  process.env.EDGETUNE_ENGINE = engine;
  try {
    const rt = createRuntime(configFromEnv({ MODEL_URI: dir }), decodeImage, { log, backendLog: quiet });
    await rt.ready;
    return { rt, log };
  } finally {
    if (before === undefined) delete process.env.EDGETUNE_ENGINE;
    else process.env.EDGETUNE_ENGINE = before;
  }
}

async function photos(): Promise<Uint8Array<ArrayBuffer>[]> {
  if (!hasAlpaca) return Promise.all([1, 2, 3, 4].map((s) => makePhoto('jpeg', 120, 90, s)));
  const out: Uint8Array<ArrayBuffer>[] = [];
  for (const cls of ['alpaca', 'not_alpaca']) {
    for (const f of (await readdir(path.join(ALPACA_DIR, cls))).sort().slice(0, 4)) out.push(await readFile(path.join(ALPACA_DIR, cls, f)));
  }
  return out;
}

beforeAll(async () => {
  await initBackend('auto', quiet);
  if (!hasAlpaca) console.warn(skipReason('the alpaca photos (generated photos are used instead)'));
});

for (const classes of [
  ['alpaca', 'llama', 'other'],
  ['alpaca', 'not_alpaca'],
]) {
  describe(`serving a ${classes.length}-class model on ort vs wasm`, () => {
    let dir: string;
    let wasm: Awaited<ReturnType<typeof runtimeOn>>;
    let ort: Awaited<ReturnType<typeof runtimeOn>>;
    beforeAll(async () => {
      dir = await mkdtemp(path.join(os.tmpdir(), 'edgetune-engine-serve-'));
      await makeModelDir(dir, { classes, inputSize: 96, alpha: 0.35, seed: classes.length });
      wasm = await runtimeOn(dir, 'wasm');
      ort = await runtimeOn(dir, 'ort');
    }, 120_000);
    afterAll(async () => {
      wasm?.rt.holder.dispose();
      ort?.rt.holder.dispose();
      if (dir) await rm(dir, { recursive: true, force: true });
    });

    it('loads on onnxruntime (converted at load) and reports the same /readyz model engine', async () => {
      const loaded = (l: typeof wasm.log) => l.entries.find((e) => e.msg === 'model loaded');
      expect(loaded(ort.log)?.runtime).toMatch(
        /^onnxruntime-node \S+ \(CPU, \d intra-op threads?\), converted at load from the fused graph$/,
      );
      expect(loaded(wasm.log)?.runtime).toMatch(/^tfjs /);
      // A folder's weights are the ones verification.json was computed from: no tfjs pass at load.
      expect(loaded(ort.log)?.checkedAgainst).toMatch(/^verification\.json \(\d+ images\), max \|dp\| /);
      const [a, b] = await Promise.all([wasm, ort].map(async (r) => (await r.rt.app.request('/readyz')).json()));
      expect(b.model.engine).toBe(a.model.engine);
      // What runs the model is in the readiness answer too (the tfjs `backend` field is absent on a
      // version served from serving.onnx, where tfjs is never evaluated).
      expect(a.model.runtime).toBe(loaded(wasm.log)?.runtime);
      expect(b.model.runtime).toBe(loaded(ort.log)?.runtime);
    });

    it('gives the same top-1 and probabilities within 1e-4 on photos', async () => {
      const imgs = await photos();
      const form = () => {
        const f = new FormData();
        for (const img of imgs) f.append('image', new Blob([img], { type: 'image/jpeg' }));
        return f;
      };
      const [a, b] = await Promise.all(
        [wasm, ort].map(async (r) => {
          const res = await r.rt.app.request('/v1/classify/batch', { method: 'POST', body: form() });
          expect(res.status).toBe(200);
          return (await res.json()).results as { label: string; predictions: { label: string; score: number }[] }[];
        }),
      );
      expect(b).toHaveLength(imgs.length);
      let maxDiff = 0;
      const labels = new Set<string>();
      for (const [i, r] of a.entries()) {
        expect(b[i].label).toBe(r.label);
        labels.add(r.label);
        const score = new Map(b[i].predictions.map((p) => [p.label, p.score]));
        for (const p of r.predictions) maxDiff = Math.max(maxDiff, Math.abs(p.score - (score.get(p.label) as number)));
      }
      console.log(
        `serving ort vs wasm, ${classes.length} classes, ${imgs.length} photos: max |dp| ${maxDiff.toExponential(2)}, labels ${[...labels].join(', ')}`,
      );
      expect(maxDiff).toBeLessThan(TOL);
      // The scores move with the input (a model that answers the same for everything would prove nothing).
      const spread = Math.max(...a.map((r) => r.predictions[0].score)) - Math.min(...a.map((r) => r.predictions[0].score));
      expect(spread).toBeGreaterThan(1e-3);
    });
  });
}

interface Answer {
  label: string | null;
  reason?: string;
  calibrated: boolean;
  predictions: { label: string; score: number }[];
  openSet?: { distance: number; threshold: number; unknown: boolean };
}

/** The pooled embedding of each photo, as the model's tfjs fused graph computes it. */
async function pooledOf(dir: string, imgs: Uint8Array[]): Promise<Float32Array[]> {
  const { model, manifest } = await loadModel(dir);
  const ff = createFastForward(model);
  try {
    const out: Float32Array[] = [];
    for (const photo of imgs) {
      const img = await decodeImage(photo, { size: manifest.input.size, resize: manifest.input.resize });
      const [pool] = tf.tidy(() =>
        ff.forwardMany(tf.tensor4d(Float32Array.from(img.data), [1, img.height, img.width, 3]), { to: [HEAD.pool] }),
      );
      out.push(Float32Array.from(await pool.data()));
      pool.dispose();
    }
    return out;
  } finally {
    ff.dispose();
    model.dispose();
  }
}

describe('serving a calibrated open-set model on ort vs wasm', () => {
  const classes = ['alpaca', 'not_alpaca'];
  let dir: string;
  let imgs: Uint8Array<ArrayBuffer>[];
  let wasm: Awaited<ReturnType<typeof runtimeOn>>;
  let ort: Awaited<ReturnType<typeof runtimeOn>>;
  beforeAll(async () => {
    dir = await mkdtemp(path.join(os.tmpdir(), 'edgetune-engine-serve-cal-'));
    await makeModelDir(dir, { classes, inputSize: 96, alpha: 0.35, seed: 5 });
    imgs = await photos();
    // Class means from the first photo of each half: the others land at different distances, so a
    // threshold between two of them flags some photos unknown and accepts others.
    const pooled = await pooledOf(dir, imgs);
    const unit = (v: Float32Array) => {
      const n = Math.hypot(...v);
      return Float32Array.from(v, (x) => x / n);
    };
    const dim = pooled[0].length;
    const means = new Float32Array(2 * dim);
    means.set(unit(pooled[0]), 0);
    means.set(unit(pooled[pooled.length - 1]), dim);
    const file = path.join(dir, 'manifest.json');
    const m = JSON.parse(await readFile(file, 'utf8'));
    m.calibration = {
      temperature: 1.7,
      fittedOn: 'test',
      bins: 10,
      eceBefore: 0.2,
      eceAfter: 0.05,
      nllBefore: 1,
      nllAfter: 0.5,
      reliabilityBefore: [],
      reliabilityAfter: [],
    };
    m.openSet = {
      metric: 'cosine-nearest-class-mean',
      layer: HEAD.pool,
      dim,
      means: encodeFloat32(means),
      meansFrom: 'test',
      target: 0.95,
      threshold: 0.5,
      interval: [0.4, 0.6],
      bootstrap: 10,
      n: 2,
      accepted: 2,
      fittedOn: 'test',
    };
    // Marked as a quantized copy: verification.json no longer describes the served weights, so the
    // load-time check runs tfjs on all three outputs instead.
    m.quantization = { dtype: 'float16', weightBytes: 1, unquantizedWeightBytes: 2, valAccuracy: 1, unquantizedValAccuracy: 1 };
    await writeFile(file, JSON.stringify(m));
    wasm = await runtimeOn(dir, 'wasm');
    ort = await runtimeOn(dir, 'ort');
  }, 120_000);
  afterAll(async () => {
    wasm?.rt.holder.dispose();
    ort?.rt.holder.dispose();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  const classify = async (r: typeof wasm, query = '') => {
    const f = new FormData();
    for (const img of imgs) f.append('image', new Blob([img], { type: 'image/jpeg' }));
    const res = await r.rt.app.request(`/v1/classify/batch${query}`, { method: 'POST', body: f });
    expect(res.status).toBe(200);
    return (await res.json()).results as Answer[];
  };

  it('serves it on onnxruntime (logits and pooled embedding as graph outputs), not on tfjs', () => {
    const loaded = ort.log.entries.find((e) => e.msg === 'model loaded');
    expect(loaded?.runtime).toMatch(/^onnxruntime-node .*converted at load from the fused graph$/);
    expect(loaded?.checkedAgainst).toMatch(/^tfjs model\.predict \(1 seeded image, 3 outputs\)/);
    expect(ort.log.entries.filter((e) => e.level === 'warn')).toEqual([]);
  });

  it('gives the same calibrated probabilities (within 1e-4), top-1, distances and unknown decisions', async () => {
    const a = await classify(wasm);
    const distances = a.map((r) => r.openSet?.distance as number).sort((x, y) => x - y);
    // A threshold midway between two neighbouring distances: the decision cannot flip on float noise.
    const mid = Math.floor(distances.length / 2);
    const threshold = (distances[mid - 1] + distances[mid]) / 2;
    expect(distances[mid] - distances[mid - 1]).toBeGreaterThan(1e-3);
    for (const query of ['', `?threshold=${threshold}`]) {
      const [x, y] = await Promise.all([classify(wasm, query), classify(ort, query)]);
      let maxDp = 0;
      let maxDd = 0;
      for (const [i, r] of x.entries()) {
        expect(r.calibrated).toBe(true);
        expect(y[i].calibrated).toBe(true);
        expect(y[i].label).toBe(r.label);
        expect(y[i].reason).toBe(r.reason);
        expect(y[i].openSet?.unknown).toBe(r.openSet?.unknown);
        expect(y[i].predictions[0].label).toBe(r.predictions[0].label);
        const score = new Map(y[i].predictions.map((p) => [p.label, p.score]));
        for (const p of r.predictions) maxDp = Math.max(maxDp, Math.abs(p.score - (score.get(p.label) as number)));
        maxDd = Math.max(maxDd, Math.abs((r.openSet?.distance as number) - (y[i].openSet?.distance as number)));
      }
      const unknown = x.filter((r) => r.label === null).length;
      console.log(
        `calibrated open-set serving ort vs wasm${query}: ${x.length} photos, max |dp| ${maxDp.toExponential(2)}, max |d distance| ${maxDd.toExponential(2)}, ${unknown} unknown`,
      );
      expect(maxDp).toBeLessThan(TOL);
      expect(maxDd).toBeLessThan(TOL);
      if (query) {
        // The override splits the photos: both answers occur, so the decision is really compared.
        expect(unknown).toBe(distances.length - mid);
        expect(x.filter((r) => r.reason === 'unknown')).toHaveLength(unknown);
      }
    }
  });
});
