import { readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import * as ort from 'onnxruntime-node';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { initBackend } from '../core/backend.js';
import { ExportsSchema } from '../core/export/exports-file.js';
import { decodeImage } from '../core/image.js';
import { type Manifest, parseManifest } from '../core/manifest.js';
import { loadModel } from '../core/model-loader.js';
import { getObject, listObjects, putObject } from '../core/s3/client.js';
import { tf } from '../core/tf.js';
import { sha256 } from '../core/versioning.js';
import { createApp } from '../functions/app.js';
import { configFromEnv } from '../functions/config.js';
import { memoryLogger } from '../functions/logger.js';
import { ModelHolder } from '../functions/model-holder.js';
import { publishModel } from '../store/model-store.js';
import { exportModelFormats } from '../training/export-formats.js';
import { useEmbeddedS3 } from './helpers/embedded-s3.js';
import { makeModelDir } from './helpers/model-dir.js';

const env = useEmbeddedS3('pub-fmt');
let dir: string;
const TARGET = 's3://edgetune/models/fmt';
const log = () => {};
let manifest: Manifest;
let version: string;

beforeAll(async () => {
  await initBackend();
  process.env.EDGETUNE_S3_BACKOFF_MS = '20';
  process.env.EDGETUNE_S3_ATTEMPTS = '3';
  dir = await makeModelDir(path.join(env.tmp, 'model'), { inputSize: 32, valAccuracy: 0.9, seed: 3 });
  // float32 only: the random test model is too sensitive for the float16 bound.
  await exportModelFormats(dir, ['onnx'], {});
}, 120_000);

const versionsUnder = async (prefix: string) => (await listObjects('edgetune', `${prefix}/`, { delimiter: '/' })).prefixes;

describe('publish --formats', () => {
  it('refuses a format that is not exported (or changed since) before anything is uploaded', async () => {
    await expect(publishModel(dir, 's3://edgetune/models/refused', { formats: ['tfjs', 'tflite-int8'], log })).rejects.toThrow(
      /tflite-int8 not exported in .*exports\.json has onnx.*edgetune export/,
    );
    const onnxFile = path.join(dir, 'model.onnx');
    const original = await readFile(onnxFile);
    await writeFile(onnxFile, Buffer.concat([original, Buffer.from([0])]));
    try {
      await expect(publishModel(dir, 's3://edgetune/models/refused', { formats: ['onnx'], log })).rejects.toThrow(
        /changed since it was exported/,
      );
    } finally {
      await writeFile(onnxFile, original);
    }
    expect(await versionsUnder('models/refused')).toEqual([]);
  });

  it('uploads each exported file with its sha256, records the formats in the manifest and reads them back', async () => {
    const r = await publishModel(dir, TARGET, { formats: ['tfjs', 'onnx'], log });
    version = r.version;
    manifest = parseManifest(JSON.parse((await getObject(`${r.uri}/manifest.json`)).body.toString()));
    const exported = ExportsSchema.parse(JSON.parse(await readFile(path.join(dir, 'exports.json'), 'utf8')));
    expect(manifest.formats?.map((f) => f.id)).toEqual(['tfjs', 'onnx']);
    for (const id of ['onnx'] as const) {
      const f = manifest.formats!.find((x) => x.id === id)!;
      const e = exported.exports.find((x) => x.format === id)!;
      expect(f.sha256).toBe(e.sha256);
      expect(f.maxAbsDiff).toBe(e.verification.maxAbsDiff);
      expect(f.top1Agreement).toBe(1);
      const body = (await getObject(`${r.uri}/${f.file}`)).body;
      expect(sha256(body)).toBe(e.sha256);
      expect(body.equals(await readFile(path.join(dir, e.file)))).toBe(true);
    }
    // tfjs: the version's own model.json + weights, as --quantize made them.
    const tfjsFormat = manifest.formats![0];
    expect(tfjsFormat.files.map((f) => f.path)).toEqual(['model.json', 'weights.bin']);
    expect(tfjsFormat.weights).toBe('float16');
    expect(sha256((await getObject(`${r.uri}/model.json`)).body)).toBe(tfjsFormat.sha256);
    expect(r.formats).toEqual(manifest.formats);
  });

  it('a version published before formats existed (no formats field) still loads', async () => {
    const { formats, ...old } = manifest;
    expect(formats).toBeDefined();
    const uri = `${TARGET}/${version}`;
    await putObject(`${uri}/manifest.json`, JSON.stringify(old));
    const m = await loadModel(uri);
    expect(m.manifest.formats).toBeUndefined();
    m.model.dispose();
    await putObject(`${uri}/manifest.json`, JSON.stringify(manifest));
  });
});

describe('GET /v1/model/files', () => {
  let app: ReturnType<typeof createApp>;
  let holder: ModelHolder;

  beforeAll(async () => {
    const logger = memoryLogger();
    holder = new ModelHolder(TARGET, { refreshSeconds: 3600, log: logger });
    app = createApp({ config: configFromEnv({ MODEL_URI: TARGET }), holder, decode: decodeImage, log: logger, apiKeys: async () => [] });
    await holder.start();
  });
  afterAll(() => holder.dispose?.());

  it('streams the published bytes with media type, length, sha256 ETag and per-version caching', async () => {
    const list = await app.request('/v1/model/files');
    expect(list.status).toBe(200);
    const body = (await list.json()) as {
      model: { version: string };
      formats: Array<{ id: string; url: string; files: Array<{ name: string; url: string }> }>;
    };
    expect(body.model.version).toBe(holder.status().model?.version);
    expect(body.formats.map((f) => f.id)).toEqual(['tfjs', 'onnx']);

    const onnx = manifest.formats!.find((f) => f.id === 'onnx')!;
    const res = await app.request('/v1/model/files/onnx');
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toBe('application/octet-stream');
    expect(res.headers.get('content-length')).toBe(String(onnx.bytes));
    expect(res.headers.get('etag')).toBe(`"${onnx.sha256}"`);
    expect(res.headers.get('cache-control')).toBe('no-cache');
    const bytes = Buffer.from(await res.arrayBuffer());
    expect(sha256(bytes)).toBe(onnx.sha256);
    // The served file runs in onnxruntime.
    const session = await ort.InferenceSession.create(bytes);
    expect(session.outputNames).toEqual(['probabilities']);

    const pinned = await app.request(body.formats[1].url);
    expect(pinned.status).toBe(200);
    expect(pinned.headers.get('cache-control')).toBe('public, max-age=31536000, immutable');
    expect(sha256(Buffer.from(await pinned.arrayBuffer()))).toBe(onnx.sha256);

    const again = await app.request('/v1/model/files/onnx', { headers: { 'if-none-match': `"${onnx.sha256}"` } });
    expect(again.status).toBe(304);
  });

  it('serves tfjs by URL: model.json and its shard, loadable with tf.loadLayersModel', async () => {
    const base = 'http://api.test';
    const fetchViaApp = (async (input: RequestInfo | URL) => app.request(String(input).replace(base, ''))) as typeof fetch;
    const model = await tf.loadLayersModel(`${base}/v1/model/files/tfjs/model.json?version=${version}`, { fetchFunc: fetchViaApp });
    const shard = await app.request('/v1/model/files/tfjs/weights.bin');
    expect(sha256(Buffer.from(await shard.arrayBuffer()))).toBe(manifest.formats![0].files[1].sha256);
    expect(model.outputs[0].shape).toEqual([null, 1]);
    model.dispose();
  });

  it('404 problem+json for an unknown id, a format the version lacks, a file it lacks and another version', async () => {
    for (const [url, detail] of [
      ['/v1/model/files/keras', /unknown format 'keras'/],
      ['/v1/model/files/tflite-int8', /not published with 'tflite-int8' \(it has tfjs, onnx\)/],
      ['/v1/model/files/tfjs/secret.bin', /no file 'secret\.bin'; its files: model\.json, weights\.bin/],
      ['/v1/model/files/tfjs/..%2Fmanifest.json', /no file/],
      ['/v1/model/files/onnx?version=20200101T000000Z-00000000', /is not the one served/],
    ] as const) {
      const res = await app.request(url);
      expect(res.status, url).toBe(404);
      expect(res.headers.get('content-type')).toBe('application/problem+json');
      expect(((await res.json()) as { detail: string }).detail).toMatch(detail);
    }
  });

  it('is in the OpenAPI document', async () => {
    const doc = (await (await app.request('/openapi.json')).json()) as { paths: Record<string, unknown> };
    expect(Object.keys(doc.paths)).toEqual(
      expect.arrayContaining(['/v1/model/files', '/v1/model/files/{format}', '/v1/model/files/{format}/{file}']),
    );
  });
});
