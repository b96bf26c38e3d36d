// Serving from serving.onnx never evaluates tfjs (issue 18's cold start): a child process serves a
// folder with serving.onnx on onnxruntime and answers a classify request while a resolve hook
// records every module ESM resolves; tfjs-core's global engine must not exist and none of
// core/tf.ts, core/backend.ts and functions/tfjs-serving.ts may have been resolved (core/tf.ts
// requires the tfjs packages, which the hook does not see: it is the door to them). The same child
// on the wasm engine is the control: there, tfjs is loaded. A folder's model loads no AWS SDK either
// (~0.15 s of a cold start): core/s3/client.ts and core/s3/sdk.ts, its doors, are resolved for
// s3:// URIs only, and sdk.ts only for a request that needs the SDK (test/s3-signed-get.test.ts).
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { initBackend } from '../core/backend.js';
import { makeModelDir } from './helpers/model-dir.js';
import { runRecordingResolved } from './helpers/resolved-child.js';
import { exportedFrom } from './helpers/serving-dir.js';
import { REPO_DIR } from './helpers/shared.js';

let tmp: string;
let dir: string;

beforeAll(async () => {
  await initBackend('auto', () => {});
  tmp = await mkdtemp(path.join(os.tmpdir(), 'edgetune-no-tfjs-'));
  const plain = await makeModelDir(path.join(tmp, 'plain'), { inputSize: 48, seed: 5 });
  dir = await exportedFrom(plain, path.join(tmp, 'exported'));
}, 60_000);
afterAll(async () => {
  if (tmp) await rm(tmp, { recursive: true, force: true });
});

async function probe(engine: 'ort' | 'wasm') {
  const resolved = path.join(tmp, `resolved-${engine}.txt`);
  const { out, urls } = await runRecordingResolved<{
    status: number;
    runtime?: string;
    warnings: string[];
    tfjsEvaluated: boolean;
  }>([path.join(REPO_DIR, 'test/helpers/serve-probe.ts')], resolved, {
    MODEL_URI: dir,
    EDGETUNE_ENGINE: engine,
    LOG_LEVEL: 'silent',
  });
  const tfjs = urls.filter((u) => /\/@tensorflow\/|\/core\/(tf|backend)\.ts$|\/functions\/tfjs-serving\.ts$/.test(u));
  const awsSdk = urls.filter((u) => /\/@aws-sdk\/|\/@smithy\/|\/core\/s3\/(client|sdk)\.ts$/.test(u));
  return { ...out, urls, tfjs, awsSdk };
}

describe('serving from serving.onnx', () => {
  it('answers on onnxruntime without evaluating tfjs or loading the AWS SDK; the wasm engine (control) does load tfjs', async () => {
    const [ort, wasm] = [await probe('ort'), await probe('wasm')];
    expect(ort.status).toBe(200);
    expect(ort.runtime).toMatch(/from serving\.onnx \(float32 weights\)$/);
    expect(ort.warnings).toEqual([]);
    // The hook saw the serving modules, so an empty tfjs list means something.
    expect(ort.urls.some((u) => u.endsWith('/functions/model-holder.ts'))).toBe(true);
    expect(ort.urls.some((u) => u.endsWith('/core/engine/ort-session.ts'))).toBe(true);
    expect(ort.tfjs).toEqual([]);
    expect(ort.tfjsEvaluated).toBe(false);
    expect(ort.awsSdk).toEqual([]);

    expect(wasm.status).toBe(200);
    expect(wasm.runtime).toMatch(/^tfjs /);
    expect(wasm.tfjsEvaluated).toBe(true);
    expect(wasm.tfjs.length).toBeGreaterThan(0);
  }, 180_000);
});
