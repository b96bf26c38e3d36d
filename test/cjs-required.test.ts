// tfjs, its WASM backend, onnxruntime-node and the S3 client are CommonJS packages that Node would scan for export
// names on every start if ESM imported them (~0.3 s of a CLI start for tfjs, which re-exports six
// packages; ~0.15 s for the S3 client), and sharp's ESM build loads slower than its CommonJS one:
// core/tf.ts, core/sharp.ts, core/export/onnx-runtime.ts and core/s3/sdk.ts require them instead. A child process loads the
// training, review, serving, S3 and publishing modules while a resolve hook records every module ESM
// resolves: the entry modules must be among them, the packages themselves never.
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { runRecordingResolved } from './helpers/resolved-child.js';
import { REPO_DIR } from './helpers/shared.js';

const REQUIRED = /\/node_modules\/(@tensorflow\/tfjs|@tensorflow\/tfjs-backend-wasm|sharp|onnxruntime-node|@aws-sdk\/client-s3)\//;

describe('tfjs, sharp, onnxruntime and the S3 client on the start-up path', () => {
  it('are required through core/tf.ts, core/sharp.ts, core/export/onnx-runtime.ts and core/s3/sdk.ts, never imported from ESM', async () => {
    const tmp = await mkdtemp(path.join(os.tmpdir(), 'edgetune-cjs-'));
    try {
      const resolved = path.join(tmp, 'resolved.txt');
      const modules = [
        'training/train.ts',
        'training/review.ts',
        'training/report/render.ts',
        'functions/tfjs-serving.ts',
        'core/s3/client.ts',
        'store/model-store.ts',
        'core/engine/ort-session.ts',
      ];
      const { out, urls } = await runRecordingResolved(
        [
          '--input-type=module',
          '-e',
          `${modules.map((m) => `await import(${JSON.stringify(path.join(REPO_DIR, m))});`).join(' ')}
           const { tf } = await import(${JSON.stringify(path.join(REPO_DIR, 'core/tf.ts'))});
           const { sharp } = await import(${JSON.stringify(path.join(REPO_DIR, 'core/sharp.ts'))});
           const { s3Sdk } = await import(${JSON.stringify(path.join(REPO_DIR, 'core/s3/sdk.ts'))});
           const ort = await (await import(${JSON.stringify(path.join(REPO_DIR, 'core/export/onnx-runtime.ts'))})).loadOnnxRuntime();
           console.log(JSON.stringify({ tfjs: tf.version.tfjs, wasm: tf.findBackendFactory('wasm') !== null, sharp: typeof sharp.versions.vips, ort: typeof ort.InferenceSession.create, s3: typeof s3Sdk.S3Client }));`,
        ],
        resolved,
      );
      // The modules work as required: tfjs with its WASM backend registered, sharp with libvips.
      expect(out).toEqual({ tfjs: expect.any(String), wasm: true, sharp: 'string', ort: 'function', s3: 'function' });
      expect(urls.some((u) => u.endsWith('/core/tf.ts'))).toBe(true);
      expect(urls.some((u) => u.endsWith('/core/sharp.ts'))).toBe(true);
      expect(urls.some((u) => u.endsWith('/training/train.ts'))).toBe(true);
      expect(urls.some((u) => u.endsWith('/core/s3/sdk.ts'))).toBe(true);
      expect(urls.filter((u) => REQUIRED.test(u))).toEqual([]);
    } finally {
      await rm(tmp, { recursive: true, force: true });
    }
  }, 120_000);
});
