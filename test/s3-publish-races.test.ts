import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import {
  DeleteObjectsCommand,
  GetObjectCommand,
  HeadObjectCommand,
  ListObjectsV2Command,
  NoSuchKey,
  PutObjectCommand,
  S3Client,
  S3ServiceException,
} from '@aws-sdk/client-s3';
import { mockClient } from 'aws-sdk-client-mock';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { initBackend } from '../core/backend.js';
import { loadModel } from '../core/model-loader.js';
import { tf } from '../core/tf.js';
import { listVersions, promoteVersion, publishModel, readCurrent, rollback } from '../store/model-store.js';
import { makeModelDir } from './helpers/model-dir.js';

/**
 * Publishing races against a mocked S3 that honours If-Match / If-None-Match and answers 412 like
 * S3 does (s3rver ignores the conditions): name collisions, a failed verification, a lost switch.
 */
const s3Mock = mockClient(S3Client);
const TARGET = 's3://edgetune/models/alpaca';

let store: Map<string, { body: Buffer; etag: string }>;
let seq = 0;
let tmp: string;
let good: string;
/** Hooks a test sets to interfere with one write. */
let beforePut: (key: string, input: { IfMatch?: string; IfNoneMatch?: string }) => void;
let corruptWeights = false;

const precondition = () =>
  new S3ServiceException({
    name: 'PreconditionFailed',
    $fault: 'client',
    $metadata: { httpStatusCode: 412 },
    message: 'precondition failed',
  });
const notFound = () => new NoSuchKey({ message: 'The specified key does not exist.', $metadata: { httpStatusCode: 404 } });

function installFakeS3() {
  s3Mock.reset();
  s3Mock.on(PutObjectCommand).callsFake(async (input) => {
    const key = input.Key as string;
    beforePut(key, input);
    const cur = store.get(key);
    if ((input.IfMatch && cur?.etag !== input.IfMatch) || (input.IfNoneMatch === '*' && cur)) throw precondition();
    let body = Buffer.from(input.Body as Buffer | string);
    if (corruptWeights && key.endsWith('/weights.bin')) {
      body = Buffer.from(body);
      body[100] ^= 0xff;
    }
    const etag = `"e${++seq}"`;
    store.set(key, { body, etag });
    return { ETag: etag };
  });
  s3Mock.on(GetObjectCommand).callsFake(async (input) => {
    const o = store.get(input.Key as string);
    if (!o) throw notFound();
    return {
      ETag: o.etag,
      ContentLength: o.body.length,
      Body: { transformToByteArray: async () => new Uint8Array(o.body), transformToString: async () => o.body.toString() },
    };
  });
  s3Mock.on(HeadObjectCommand).callsFake(async (input) => {
    const o = store.get(input.Key as string);
    if (!o)
      throw Object.assign(
        new S3ServiceException({ name: 'NotFound', $fault: 'client', $metadata: { httpStatusCode: 404 }, message: 'NotFound' }),
      );
    return { ETag: o.etag, ContentLength: o.body.length };
  });
  s3Mock.on(ListObjectsV2Command).callsFake(async (input) => {
    const prefix = input.Prefix ?? '';
    const keys = [...store.keys()].filter((k) => k.startsWith(prefix)).sort();
    if (!input.Delimiter)
      return { Contents: keys.map((Key) => ({ Key, ETag: store.get(Key)?.etag, Size: store.get(Key)?.body.length })), IsTruncated: false };
    const prefixes = new Set<string>();
    const contents: Array<{ Key: string }> = [];
    for (const k of keys) {
      const rest = k.slice(prefix.length);
      const i = rest.indexOf(input.Delimiter);
      if (i >= 0) prefixes.add(prefix + rest.slice(0, i + 1));
      else contents.push({ Key: k });
    }
    return { Contents: contents, CommonPrefixes: [...prefixes].map((Prefix) => ({ Prefix })), IsTruncated: false };
  });
  s3Mock.on(DeleteObjectsCommand).callsFake(async (input) => {
    for (const o of input.Delete?.Objects ?? []) store.delete(o.Key as string);
    return {};
  });
}

const versionKeys = (version: string) => [...store.keys()].filter((k) => k.startsWith(`models/alpaca/${version}/`)).sort();

beforeAll(async () => {
  await initBackend();
  process.env.EDGETUNE_S3_ENDPOINT = 'http://127.0.0.1:9'; // never reached: every command is answered by the mock
  process.env.EDGETUNE_S3_ACCESS_KEY_ID = 'TEST';
  process.env.EDGETUNE_S3_SECRET_ACCESS_KEY = 'TEST';
  process.env.EDGETUNE_S3_ATTEMPTS = '1';
  process.env.EDGETUNE_S3_CLIENT = 'sdk'; // the mock answers SDK commands: GETs too must go through the SDK
  tmp = await mkdtemp(path.join(os.tmpdir(), 'edgetune-pub-race-'));
  good = await makeModelDir(path.join(tmp, 'good'), { inputSize: 32, valAccuracy: 0.9, seed: 1 });
});

afterAll(async () => {
  s3Mock.restore();
  delete process.env.EDGETUNE_S3_ENDPOINT;
  delete process.env.EDGETUNE_S3_ACCESS_KEY_ID;
  delete process.env.EDGETUNE_S3_SECRET_ACCESS_KEY;
  delete process.env.EDGETUNE_S3_ATTEMPTS;
  delete process.env.EDGETUNE_S3_CLIENT;
  await rm(tmp, { recursive: true, force: true });
});

beforeEach(() => {
  store = new Map();
  beforePut = () => {};
  corruptWeights = false;
  installFakeS3();
});

const quiet = () => {};

describe('publishing races (conditional writes answered like S3)', () => {
  it('two publishers of the same folder at once: two distinct verified versions, the live one loads, nothing deleted', async () => {
    const [a, b] = await Promise.all([publishModel(good, TARGET, { log: quiet }), publishModel(good, TARGET, { log: quiet })]);
    expect(a.version).not.toBe(b.version);
    expect(s3Mock.commandCalls(DeleteObjectsCommand)).toHaveLength(0);
    for (const v of [a.version, b.version]) {
      expect(versionKeys(v)).toEqual(
        expect.arrayContaining([`models/alpaca/${v}/manifest.json`, `models/alpaca/${v}/verified.json`, `models/alpaca/${v}/weights.bin`]),
      );
    }
    const { current } = await readCurrent('edgetune', 'models/alpaca');
    expect([a.version, b.version]).toContain(current?.version);
    const live = await loadModel(TARGET, { verify: true });
    expect(live.version).toBe(current?.version);
    live.model.dispose();
    const { versions } = await listVersions(TARGET);
    expect(versions.map((v) => v.verified)).toEqual([true, true]);
  });

  it('a version name already taken (412 on the claim) is never written into; another name is used', async () => {
    let taken: string | undefined;
    beforePut = (key, input) => {
      // Another publisher holds the first name this one draws.
      if (!taken && key.endsWith('/claim.json') && input.IfNoneMatch === '*') {
        taken = key.split('/')[2];
        store.set(key, { body: Buffer.from('{"token":"other"}'), etag: '"other"' });
      }
    };
    const r = await publishModel(good, TARGET, { log: quiet });
    expect(taken).toBeDefined();
    expect(r.version).not.toBe(taken);
    expect(versionKeys(taken as string)).toEqual([`models/alpaca/${taken}/claim.json`]);
    expect(store.get(`models/alpaca/${taken}/claim.json`)?.body.toString()).toBe('{"token":"other"}');
    expect(s3Mock.commandCalls(DeleteObjectsCommand)).toHaveLength(0);
  });

  it('a failed verification: no verified marker, its own files removed, the live model untouched; promote refuses it', async () => {
    const first = await publishModel(good, TARGET, { log: quiet });
    const liveBefore = store.get('models/alpaca/current.json')?.body.toString();
    corruptWeights = true;
    const err = await publishModel(good, TARGET, { log: quiet, force: true }).catch((e) => e);
    expect(err?.message).toMatch(/sha256 mismatch/);
    expect(store.get('models/alpaca/current.json')?.body.toString()).toBe(liveBefore);
    const deleted = s3Mock.commandCalls(DeleteObjectsCommand).flatMap((c) => c.args[0].input.Delete?.Objects?.map((o) => o.Key) ?? []);
    expect(deleted.length).toBeGreaterThan(0);
    // Only keys inside the failed version's folder, never current.json nor the live version.
    const failed = deleted[0]?.split('/')[2] as string;
    expect(failed).not.toBe(first.version);
    for (const k of deleted) expect(k).toMatch(new RegExp(`^models/alpaca/${failed}/`));
    expect(versionKeys(first.version)).toContain(`models/alpaca/${first.version}/verified.json`);
    const live = await loadModel(TARGET, { verify: true });
    expect(live.version).toBe(first.version);
    live.model.dispose();
  });

  it('a failed verification whose cleanup cannot delete leaves a version that list marks unverified and promote refuses', async () => {
    await publishModel(good, TARGET, { log: quiet });
    s3Mock.on(DeleteObjectsCommand).rejects(Object.assign(new Error('AccessDenied'), { $metadata: { httpStatusCode: 403 } }));
    corruptWeights = true;
    await expect(publishModel(good, TARGET, { log: quiet, force: true })).rejects.toThrow(/sha256 mismatch/);
    const { versions, current } = await listVersions(TARGET);
    const bad = versions.find((v) => !v.verified);
    expect(bad).toBeDefined();
    expect(bad?.complete).toBe(true); // its manifest is there: only the marker tells it apart
    expect(current?.version).not.toBe(bad?.version);
    await expect(promoteVersion(TARGET, bad?.version as string)).rejects.toThrow(/verified\.json/);
  });

  it('a 412 on the manifest (someone else writes into this version): the publish fails and deletes nothing', async () => {
    beforePut = (key, input) => {
      if (key.endsWith('/manifest.json') && input.IfNoneMatch === '*') store.set(key, { body: Buffer.from('{}'), etag: '"x"' });
    };
    await expect(publishModel(good, TARGET, { log: quiet })).rejects.toMatchObject({ $metadata: { httpStatusCode: 412 } });
    expect(s3Mock.commandCalls(DeleteObjectsCommand)).toHaveLength(0);
    expect(store.has('models/alpaca/current.json')).toBe(false);
  });

  it('losing the current.json switch (412) re-runs the gate against the new live version and never deletes', async () => {
    const first = await publishModel(good, TARGET, { log: quiet });
    let raced = false;
    beforePut = (key, input) => {
      // Between this publisher's read of current.json and its conditional write, another promote lands.
      if (!raced && key === 'models/alpaca/current.json' && input.IfMatch) {
        raced = true;
        const cur = store.get(key) as { body: Buffer; etag: string };
        store.set(key, { body: cur.body, etag: '"someone-else"' });
      }
    };
    const lines: string[] = [];
    const r = await publishModel(good, TARGET, { log: (l) => lines.push(l) });
    expect(raced).toBe(true);
    expect(lines.some((l) => /current\.json changed meanwhile/.test(l))).toBe(true);
    expect(r.promoted).toBe(true);
    expect(s3Mock.commandCalls(DeleteObjectsCommand)).toHaveLength(0);
    const { current } = await readCurrent('edgetune', 'models/alpaca');
    expect(current?.version).toBe(r.version);
    expect(current?.history[0].version).toBe(first.version);
  });

  it('rollback skips a version without the marker and goes to the newest verified one', async () => {
    const v1 = await publishModel(good, TARGET, { log: quiet });
    const v2 = await publishModel(good, TARGET, { log: quiet });
    await publishModel(good, TARGET, { log: quiet });
    store.delete(`models/alpaca/${v2.version}/verified.json`);
    const lines: string[] = [];
    const next = await rollback(TARGET, { log: (l) => lines.push(l) });
    expect(next.version).toBe(v1.version);
    expect(lines.join('\n')).toContain(`skipping ${v2.version}`);
    expect(tf.memory().numTensors).toBeGreaterThanOrEqual(0);
  });
});
