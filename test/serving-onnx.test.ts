// serving.onnx, the ahead-of-time serving graph: training's export and publishing write it with a
// record that matches the file and the served weights; serving from it on onnxruntime gives tfjs'
// answers on the same weights (float32 folder, float16 and unquantized published versions); a corrupt
// file is refused on refresh (the previous model keeps serving); a version without it is converted
// at load as before.
import { copyFile, mkdir, readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { initBackend } from '../core/backend.js';
import { HEAD } from '../core/classifier.js';
import { decodeImage } from '../core/image.js';
import { type Manifest, ManifestSchema, SERVING_CHECK_IMAGES, VerificationSchema } from '../core/manifest.js';
import { loadModel, loadServing, ModelIntegrityError } from '../core/model-loader.js';
import { maxAbsDiff } from '../core/probability-rows.js';
import { getObject } from '../core/s3/client.js';
import { SERVING_ONNX_FILE } from '../core/serving-onnx.js';
import { sha256 } from '../core/versioning.js';
import { configFromEnv } from '../functions/config.js';
import { memoryLogger } from '../functions/logger.js';
import { ModelHolder } from '../functions/model-holder.js';
import { createRuntime } from '../functions/runtime.js';
import { predictVerification, publishModel } from '../store/model-store.js';
import { useEmbeddedS3 } from './helpers/embedded-s3.js';
import { makeModelDir } from './helpers/model-dir.js';
import { exportedFrom } from './helpers/serving-dir.js';
import { makePhoto } from './helpers/tiny-model.js';

const quiet = () => {};
const SIZE = 64;
const env = useEmbeddedS3('serving-onnx');
/** makeModelDir's folder: no serving.onnx (a model from before it). */
let plain: string;
/** The same weights through training's exportModel: serving.onnx written. */
let exported: string;

async function withEngine<T>(engine: 'wasm' | 'ort', fn: () => Promise<T>): Promise<T> {
  const before = process.env.EDGETUNE_ENGINE;
  process.env.EDGETUNE_ENGINE = engine;
  try {
    return await fn();
  } finally {
    if (before === undefined) delete process.env.EDGETUNE_ENGINE;
    else process.env.EDGETUNE_ENGINE = before;
  }
}

async function runtimeOn(uri: string, engine: 'wasm' | 'ort') {
  const log = memoryLogger();
  const rt = await withEngine(engine, async () => {
    const r = createRuntime(configFromEnv({ MODEL_URI: uri }), decodeImage, { log, backendLog: quiet });
    await r.ready;
    return r;
  });
  const loaded = log.entries.find((e) => e.msg === 'model loaded');
  return { rt, log, loaded };
}

type Result = { label: string; predictions: { label: string; score: number }[] };

async function classify(rt: Awaited<ReturnType<typeof runtimeOn>>['rt'], photos: Uint8Array<ArrayBuffer>[]): Promise<Result[]> {
  const form = new FormData();
  for (const p of photos) form.append('image', new Blob([p], { type: 'image/jpeg' }));
  const res = await rt.app.request('/v1/classify/batch', { method: 'POST', body: form });
  expect(res.status).toBe(200);
  return (await res.json()).results as Result[];
}

/** Top-1 identical; the largest |dp| between two answers to the same photos. */
function compare(a: Result[], b: Result[]): number {
  expect(b).toHaveLength(a.length);
  let diff = 0;
  for (const [i, r] of a.entries()) {
    expect(b[i].label).toBe(r.label);
    const score = new Map(b[i].predictions.map((p) => [p.label, p.score]));
    for (const p of r.predictions) diff = Math.max(diff, Math.abs(p.score - (score.get(p.label) as number)));
  }
  return diff;
}

let photos: Uint8Array<ArrayBuffer>[];

beforeAll(async () => {
  await initBackend('auto', quiet);
  plain = await makeModelDir(path.join(env.tmp, 'plain'), { classes: ['alpaca', 'llama', 'other'], inputSize: SIZE, seed: 3 });
  // Training's export on the same weights and verification images.
  exported = await exportedFrom(plain, path.join(env.tmp, 'exported'));
  photos = await Promise.all([1, 2, 3, 4, 5, 6].map((s) => makePhoto('jpeg', 120, 90, s)));
}, 120_000);

/** The record matches the file beside it and the tfjs probabilities of the weights `uri` serves. */
async function expectRecordMatches(uri: string, onnx: Buffer, weights: 'float32' | 'float16'): Promise<Manifest> {
  const { model, manifest } = await loadModel(uri);
  try {
    const s = manifest.serving;
    expect(s).toBeDefined();
    if (!s) throw new Error('no serving record');
    expect(s.onnx).toEqual({
      file: SERVING_ONNX_FILE,
      bytes: onnx.byteLength,
      sha256: sha256(onnx),
      outputs: [HEAD.probabilities, HEAD.logits, HEAD.pool],
      inputShape: [SIZE, SIZE, 3],
      weights,
    });
    const v = VerificationSchema.parse(JSON.parse(await readFile(path.join(plain, 'verification.json'), 'utf8')));
    const k = SERVING_CHECK_IMAGES;
    const first = {
      ...v,
      shape: [k, SIZE, SIZE, 3] as [number, number, number, 3],
      pixels: Buffer.from(v.pixels, 'base64')
        .subarray(0, k * SIZE * SIZE * 3)
        .toString('base64'),
    };
    expect(s.check.images).toBe(k);
    expect(maxAbsDiff(s.check.probabilities, await predictVerification(model, first, manifest.classes.length))).toBeLessThan(1e-6);
    return manifest;
  } finally {
    model.dispose();
  }
}

describe('serving.onnx: written by training and publishing', () => {
  it("training's export writes serving.onnx before the manifest, recorded with the trained weights' probabilities", async () => {
    const manifest = await expectRecordMatches(exported, await readFile(path.join(exported, SERVING_ONNX_FILE)), 'float32');
    ManifestSchema.parse(manifest);
    // Trained weights: the check is verification.json's own first rows.
    const v = VerificationSchema.parse(JSON.parse(await readFile(path.join(exported, 'verification.json'), 'utf8')));
    expect(maxAbsDiff(manifest.serving!.check.probabilities, v.probabilities.slice(0, SERVING_CHECK_IMAGES))).toBeLessThan(1e-6);
  });

  for (const dtype of ['float16', 'none'] as const) {
    it(`publish (${dtype}) uploads serving.onnx built from the weights it publishes, verified by sha256`, async () => {
      const lines: string[] = [];
      const r = await publishModel(exported, `s3://edgetune/models/${dtype}`, { quantize: dtype, log: (l) => lines.push(l) });
      const onnx = (await getObject(`${r.uri}/${SERVING_ONNX_FILE}`)).body;
      const manifest = await expectRecordMatches(r.uri, onnx, dtype === 'none' ? 'float32' : 'float16');
      if (dtype === 'float16') {
        // Not the folder's float32 graph: the quantized weights as tfjs dequantizes them.
        const local = await readFile(path.join(exported, SERVING_ONNX_FILE));
        expect(manifest.serving?.onnx.sha256).not.toBe(sha256(local));
      }
      expect(lines.some((l) => /verified .*serving\.onnx/.test(l))).toBe(true);
    }, 60_000);
  }
});

describe('serving.onnx: served on onnxruntime without a tfjs model', () => {
  for (const [what, uri] of [
    ['a folder (float32)', () => exported],
    ['a published float16 version', () => 's3://edgetune/models/float16'],
    ['a published unquantized version', () => 's3://edgetune/models/none'],
  ] as const) {
    it(`${what}: top-1 identical and probabilities within 1e-4 of tfjs on the same weights`, async () => {
      const ort = await runtimeOn(uri(), 'ort');
      const tfjs = await runtimeOn(uri(), 'wasm');
      try {
        expect(ort.loaded?.runtime).toMatch(
          /^onnxruntime-node \S+ \(CPU, \d intra-op threads?\), from serving\.onnx \((float32|float16) weights\)$/,
        );
        expect(ort.loaded?.checkedAgainst).toMatch(/^manifest\.serving\.check \(2 verification\.json images\), max \|dp\| /);
        expect(tfjs.loaded?.runtime).toMatch(/^tfjs /);
        // /readyz names what runs the model; tfjs was never evaluated, so it reports no tfjs backend.
        const ready = await (await ort.rt.app.request('/readyz')).json();
        expect(ready.model.runtime).toBe(ort.loaded?.runtime);
        expect(ready).not.toHaveProperty('backend');
        const [a, b] = [await classify(tfjs.rt, photos), await classify(ort.rt, photos)];
        const diff = compare(a, b);
        console.log(`serving.onnx from ${what} vs tfjs: max |dp| ${diff.toExponential(2)}`);
        expect(diff).toBeLessThan(1e-4);
        const spread = Math.max(...a.map((r) => r.predictions[0].score)) - Math.min(...a.map((r) => r.predictions[0].score));
        expect(spread).toBeGreaterThan(1e-3);
      } finally {
        ort.rt.holder.dispose();
        tfjs.rt.holder.dispose();
      }
    }, 60_000);
  }

  it('a version without serving.onnx is still converted at load', async () => {
    const ort = await runtimeOn(plain, 'ort');
    try {
      expect(ort.loaded?.runtime).toMatch(/converted at load from the fused graph$/);
      expect((await classify(ort.rt, photos.slice(0, 1)))[0].label).toBeTruthy();
    } finally {
      ort.rt.holder.dispose();
    }
  });

  it('a corrupt serving.onnx is refused: an integrity error on load, and on refresh the previous model keeps serving', async () => {
    const dir = path.join(env.tmp, 'refresh');
    await mkdir(dir);
    for (const f of ['model.json', 'weights.bin', 'verification.json', 'manifest.json', SERVING_ONNX_FILE]) {
      await copyFile(path.join(exported, f), path.join(dir, f));
    }
    let now = 1_000_000;
    const log = memoryLogger();
    const holder = new ModelHolder(dir, { refreshSeconds: 60, log, now: () => now, engine: 'ort' });
    await holder.start();
    const v1 = holder.status().model?.version;
    expect(holder.status().state).toBe('ready');
    const before = holder.acquire()!;
    const reference = await before.serving.predict(new Float32Array(SIZE * SIZE * 3).fill(100), 1);
    before.release();

    // A new version whose serving.onnx is not the file its manifest names.
    const m = JSON.parse(await readFile(path.join(dir, 'manifest.json'), 'utf8'));
    m.version = 'tampered-version';
    await writeFile(path.join(dir, 'manifest.json'), JSON.stringify(m));
    const onnx = await readFile(path.join(dir, SERVING_ONNX_FILE));
    onnx[onnx.length - 100] ^= 0xff;
    await writeFile(path.join(dir, SERVING_ONNX_FILE), onnx);
    await expect(loadServing(dir, { onnx: true })).rejects.toThrow(ModelIntegrityError);
    await expect(loadServing(dir, { onnx: true })).rejects.toThrow(/serving\.onnx: sha256 mismatch/);

    now += 61_000;
    holder.maybeRefresh();
    await holder.settle();
    expect(holder.status()).toMatchObject({
      state: 'ready',
      model: { version: v1 },
      lastError: { during: 'refresh', message: expect.stringMatching(/serving\.onnx: sha256 mismatch/) },
    });
    const lease = holder.acquire()!;
    expect(Array.from(await lease.serving.predict(new Float32Array(SIZE * SIZE * 3).fill(100), 1))).toEqual(Array.from(reference));
    lease.release();
    // A truncated file (shorter than its record) is refused the same way.
    await writeFile(path.join(dir, SERVING_ONNX_FILE), onnx.subarray(0, 1000));
    await expect(loadServing(dir, { onnx: true })).rejects.toThrow(/sha256 mismatch/);
    // A longer one is refused before it is read, naming its size.
    await writeFile(path.join(dir, SERVING_ONNX_FILE), Buffer.concat([onnx, Buffer.alloc(10)]));
    await expect(loadServing(dir, { onnx: true })).rejects.toThrow(ModelIntegrityError);
    await expect(loadServing(dir, { onnx: true })).rejects.toThrow(
      new RegExp(`is ${onnx.length + 10} bytes, more than the ${onnx.length} allowed`),
    );
    holder.dispose();
  });
});
