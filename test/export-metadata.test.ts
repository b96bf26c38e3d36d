// Exports carry the model's temperature and open-set threshold as metadata (ONNX metadata_props,
// TFLite's `edgetune` entry), read back from the written files; a model without them has none.
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { initBackend } from '../core/backend.js';
import { exportFormats } from '../core/export/export-formats.js';
import { readOnnx } from '../core/export/onnx.js';
import { readModel } from '../core/export/tflite/flatbuffer.js';
import type { Manifest, Verification } from '../core/manifest.js';
import { loadModel } from '../core/model-loader.js';
import { makeModelDir } from './helpers/model-dir.js';

const T = 1.83;
const THRESHOLD = 0.271;
let tmp: string;

beforeAll(async () => {
  await initBackend('auto', () => {});
  tmp = await mkdtemp(path.join(os.tmpdir(), 'edgetune-export-meta-'));
});
afterAll(async () => {
  if (tmp) await rm(tmp, { recursive: true, force: true });
});

function calibrated(m: Manifest): Manifest {
  return {
    ...m,
    calibration: {
      temperature: T,
      fittedOn: 'validation split',
      bins: 10,
      eceBefore: 0.1,
      eceAfter: 0.04,
      nllBefore: 0.5,
      nllAfter: 0.4,
      reliabilityBefore: [],
      reliabilityAfter: [],
    },
    openSet: {
      metric: 'cosine-nearest-class-mean',
      layer: 'global_average_pooling2d',
      dim: 4,
      means: Buffer.alloc(32).toString('base64'),
      meansFrom: 'training split',
      target: 0.95,
      threshold: THRESHOLD,
      interval: [0.2, 0.3],
      bootstrap: 10,
      n: 8,
      accepted: 8,
      fittedOn: 'validation split',
    },
  } as Manifest;
}

async function exported(withCalibration: boolean) {
  const dir = await makeModelDir(path.join(tmp, withCalibration ? 'cal' : 'plain'), { inputSize: 32 });
  const { model, manifest } = await loadModel(dir);
  const verification = JSON.parse(await readFile(path.join(dir, 'verification.json'), 'utf8')) as Verification;
  const out = path.join(dir, 'exports');
  try {
    await exportFormats(model, withCalibration ? calibrated(manifest) : manifest, ['onnx', 'tflite'], { outDir: out, verification });
  } finally {
    model.dispose();
  }
  const onnx = readOnnx(new Uint8Array(await readFile(path.join(out, 'model.onnx')))) as {
    metadata_props: { key: string; value: string }[];
  };
  const tflite = readModel(new Uint8Array(await readFile(path.join(out, 'model.tflite'))));
  const entries = new Map<string, string>();
  for (let i = 0; i < tflite.metadataLength(); i++) {
    const e = tflite.metadata(i);
    entries.set(e?.name() ?? '', new TextDecoder().decode(tflite.buffers(e?.buffer() ?? 0)?.dataArray() ?? new Uint8Array()));
  }
  return {
    onnx: new Map(onnx.metadata_props.map((p) => [p.key, p.value])),
    tflite: JSON.parse(entries.get('edgetune') ?? '{}') as Record<string, string>,
  };
}

describe('export metadata: temperature and open-set threshold', () => {
  it('ONNX metadata_props and the TFLite edgetune entry carry them, read back from the files', async () => {
    const { onnx, tflite } = await exported(true);
    for (const meta of [onnx, new Map(Object.entries(tflite))]) {
      expect(Number(meta.get('edgetune.temperature'))).toBe(T);
      expect(meta.get('edgetune.calibration')).toMatch(/softmax\(logits \/ 1\.83\)/);
      expect(JSON.parse(meta.get('edgetune.open-set') as string)).toEqual({
        metric: 'cosine-nearest-class-mean',
        threshold: THRESHOLD,
        target: 0.95,
        fittedOn: 'validation split',
      });
    }
  }, 120_000);

  it('a model without them exports no such entries', async () => {
    const { onnx, tflite } = await exported(false);
    expect(onnx.get('edgetune.classes')).toBe('["alpaca","not_alpaca"]');
    for (const key of ['edgetune.temperature', 'edgetune.calibration', 'edgetune.open-set']) {
      expect(onnx.has(key)).toBe(false);
      expect(key in tflite).toBe(false);
    }
  }, 120_000);
});
