import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { initBackend } from '../core/backend.js';
import { decodeImage } from '../core/image.js';
import * as loader from '../core/model-loader.js';
import { tf } from '../core/tf.js';
import { createApp } from '../functions/app.js';
import { configFromEnv } from '../functions/config.js';
import { memoryLogger } from '../functions/logger.js';
import { ModelHolder, type ModelSource } from '../functions/model-holder.js';
import { chooseEngine } from '../functions/tfjs-serving.js';
import { makeModelDir } from './helpers/model-dir.js';
import { makePhoto } from './helpers/tiny-model.js';

let dir: string;
const quiet = () => {};

beforeAll(async () => {
  await initBackend('auto', quiet);
  dir = await mkdtemp(path.join(os.tmpdir(), 'edgetune-refresh-'));
  await makeModelDir(dir, { inputSize: 32 });
});
afterAll(async () => {
  if (dir) await rm(dir, { recursive: true, force: true });
});

/** The real loader, counting calls. */
function countingSource() {
  const calls = { check: 0, load: 0 };
  const source: ModelSource = {
    checkForUpdate: (u, e) => {
      calls.check++;
      return loader.checkForUpdate(u, e);
    },
    loadModel: (u, o) => {
      calls.load++;
      return loader.loadModel(u, o);
    },
  };
  return { source, calls };
}

async function manifestVersion(): Promise<string> {
  return JSON.parse(await readFile(path.join(dir, 'manifest.json'), 'utf8')).version;
}

describe('model holder: background refresh and atomic swap', () => {
  it('re-checks at most every MODEL_REFRESH_SECONDS, swaps a new version in, and keeps the old one when the new one is broken', async () => {
    let now = 1_000_000;
    const log = memoryLogger();
    const { source, calls } = countingSource();
    const holder = new ModelHolder(dir, { refreshSeconds: 60, log, source, now: () => now });
    const app = createApp({ config: configFromEnv({ MODEL_URI: dir }), holder, decode: decodeImage, log, apiKeys: async () => [] });
    await holder.start();
    const v1 = await manifestVersion();
    expect(holder.status()).toMatchObject({ state: 'ready', model: { version: v1 } });
    expect(calls).toEqual({ check: 0, load: 1 });
    const tensorsWithOneModel = tf.memory().numTensors;

    // A new model lands in the folder; requests inside the interval do not look.
    await makeModelDir(dir, { inputSize: 32, seed: 7 });
    const v2 = await manifestVersion();
    expect(v2).not.toBe(v1);
    now += 30_000;
    holder.maybeRefresh();
    await holder.settle();
    expect(calls.check).toBe(0);

    // A request in flight keeps its model even when the swap happens under it.
    const lease = holder.acquire()!;
    now += 31_000;
    const res = await app.request('/readyz');
    expect((await res.json()).model.version).toBe(v1); // the check runs in the background
    await holder.settle();
    expect(calls).toEqual({ check: 1, load: 2 });
    expect(holder.status().model?.version).toBe(v2);
    const old = await lease.serving.predict(new Float32Array(32 * 32 * 3), 1);
    expect(old.length).toBe(1);
    lease.release();
    expect(tf.memory().numTensors).toBe(tensorsWithOneModel); // the old model's weights are gone

    const ok = await app.request('/v1/classify', {
      method: 'POST',
      body: await makePhoto('jpeg'),
      headers: { 'content-type': 'image/jpeg' },
    });
    expect((await ok.json()).model.version).toBe(v2);

    // A broken version (weights do not match the manifest's sha256) is refused; v2 keeps serving.
    const m = JSON.parse(await readFile(path.join(dir, 'manifest.json'), 'utf8'));
    m.version = 'broken-version';
    m.files[0].sha256 = '0'.repeat(64);
    await writeFile(path.join(dir, 'manifest.json'), JSON.stringify(m));
    now += 61_000;
    holder.maybeRefresh('req-1');
    await holder.settle();
    const s = holder.status();
    expect(s).toMatchObject({
      state: 'ready',
      model: { version: v2 },
      lastError: { during: 'refresh', message: expect.stringMatching(/sha256/) },
    });
    const ready = await app.request('/readyz');
    expect(ready.status).toBe(200);
    // The client sees that a refresh failed, not why (the message names internal paths and checksums): that is in the log.
    const readyBody = await ready.json();
    expect(readyBody).toMatchObject({
      ready: true,
      model: { version: v2 },
      lastError: { during: 'refresh', message: expect.stringMatching(/server log/) },
    });
    expect(JSON.stringify(readyBody)).not.toMatch(/sha256/);
    expect(log.entries.find((e) => String(e.msg).includes('refresh failed'))).toMatchObject({
      level: 'error',
      requestId: 'req-1',
      serving: v2,
    });
    const still = await app.request('/v1/classify', {
      method: 'POST',
      body: await makePhoto('png'),
      headers: { 'content-type': 'image/png' },
    });
    expect(still.status).toBe(200);
    expect(tf.memory().numTensors).toBe(tensorsWithOneModel);
    holder.dispose();
  });

  it('reports a failed first load on /readyz (503) and recovers on a later check', async () => {
    let now = 0;
    const empty = await mkdtemp(path.join(os.tmpdir(), 'edgetune-empty-'));
    const log = memoryLogger();
    const holder = new ModelHolder(empty, { refreshSeconds: 10, log, source: loader, now: () => now });
    const app = createApp({ config: configFromEnv({ MODEL_URI: empty }), holder, decode: decodeImage, log, apiKeys: async () => [] });
    await holder.start();
    const r = await app.request('/readyz');
    expect(r.status).toBe(503);
    const body = await r.json();
    expect(body).toMatchObject({ ready: false, lastError: { during: 'initial-load', message: expect.stringMatching(/server log/) } });
    expect(JSON.stringify(body)).not.toContain(empty);
    expect(JSON.stringify(log.entries)).toMatch(/manifest\.json/);
    const c = await app.request('/v1/classify', {
      method: 'POST',
      body: await makePhoto('jpeg'),
      headers: { 'content-type': 'image/jpeg' },
    });
    expect(c.status).toBe(503);
    expect((await c.json()).detail).toMatch(/could not be loaded/);
    await makeModelDir(empty, { inputSize: 32 });
    now += 11_000;
    await app.request('/readyz');
    await holder.settle();
    expect((await app.request('/readyz')).status).toBe(200);
    holder.dispose();
    await rm(empty, { recursive: true, force: true });
  });

  it('serves with the fused executor when it matches model.predict, and falls back to model.predict when told to', async () => {
    const { model } = await loader.loadModel(dir, { verify: false }); // the first test left a broken manifest checksum
    const before = tf.memory().numTensors;
    const warnings: string[] = [];
    const fused = chooseEngine(model, 32, (m) => warnings.push(m));
    expect(fused.engine).toBe('fused');
    process.env.EDGETUNE_FAST_FORWARD = '0';
    const layers = chooseEngine(model, 32, (m) => warnings.push(m));
    delete process.env.EDGETUNE_FAST_FORWARD;
    expect(layers.engine).toBe('layers');
    const [a, b] = tf.tidy(() => {
      const x = tf.randomUniform([3, 32, 32, 3], 0, 255, 'float32', 3);
      return [fused.forward(x).dataSync(), layers.forward(x).dataSync()];
    });
    for (let i = 0; i < a.length; i++) expect(a[i]).toBeCloseTo(b[i], 4);
    expect(warnings).toEqual([]);
    fused.dispose(); // frees the folded weights and the model
    expect(tf.memory().numTensors).toBeLessThan(before);
  });
});
