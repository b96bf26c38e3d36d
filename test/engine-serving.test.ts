// Serving on onnxruntime (EDGETUNE_ENGINE=ort) against serving on tfjs: the same API answers on the
// same weights for real photos (top-1 identical, probabilities within 1e-4), for a softmax and a
// sigmoid (2-class) head.
import { mkdtemp, readdir, readFile, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { initBackend } from '../core/backend.js';
import { decodeImage } from '../core/image.js';
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
      const [a, b] = await Promise.all([wasm, ort].map(async (r) => (await r.rt.app.request('/readyz')).json()));
      expect(b.model.engine).toBe(a.model.engine);
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
