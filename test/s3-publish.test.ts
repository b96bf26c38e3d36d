import path from 'node:path';
import { PutObjectCommand } from '@aws-sdk/client-s3';
import { beforeAll, describe, expect, it } from 'vitest';
import { initBackend } from '../core/backend.js';
import { checkForUpdate, loadModel, ModelIntegrityError } from '../core/model-loader.js';
import { getObject, sdkClient } from '../core/s3/client.js';
import { startS3rver } from '../core/s3/embedded.js';
import { tf } from '../core/tf.js';
import { sha256, VERSION_RE } from '../core/versioning.js';
import { listVersions, promoteVersion, publishModel, readCurrent, rollback } from '../store/model-store.js';
import { useEmbeddedS3 } from './helpers/embedded-s3.js';
import { makeModelDir } from './helpers/model-dir.js';

const env = useEmbeddedS3('s3-pub');
let good: string;
let worse: string;
const TARGET = 's3://edgetune/models/alpaca';
const lines: string[] = [];
const log = (l: string) => lines.push(l);

beforeAll(async () => {
  await initBackend();
  process.env.EDGETUNE_S3_BACKOFF_MS = '20';
  process.env.EDGETUNE_S3_ATTEMPTS = '3';
  good = await makeModelDir(path.join(env.tmp, 'good'), { inputSize: 32, valAccuracy: 0.9, seed: 1 });
  worse = await makeModelDir(path.join(env.tmp, 'worse'), { inputSize: 32, valAccuracy: 0.7, seed: 2 });
});

describe('publishModel', () => {
  let v1: string;

  it('publishes, verifies and promotes the first version; float16 halves the weight bytes', async () => {
    const before = tf.memory().numTensors;
    const r = await publishModel(good, TARGET, { log });
    expect(r.promoted).toBe(true);
    expect(r.reason).toBe('no current version');
    expect(r.version).toMatch(VERSION_RE);
    expect(r.uri).toBe(`${TARGET}/${r.version}`);
    expect(r.quantization.dtype).toBe('float16');
    expect(r.quantization.weightBytes * 2).toBe(r.quantization.unquantizedWeightBytes);
    console.log(
      `float16: ${r.quantization.unquantizedWeightBytes} -> ${r.quantization.weightBytes} bytes; timings ${JSON.stringify(r.timings)}`,
    );
    expect(tf.memory().numTensors).toBe(before);
    v1 = r.version;

    const { current } = await readCurrent('edgetune', 'models/alpaca');
    expect(current?.version).toBe(v1);
    const weights = (await getObject(`${r.uri}/weights.bin`)).body;
    const man = JSON.parse((await getObject(`${r.uri}/manifest.json`)).body.toString());
    expect(man.files).toEqual([{ path: 'weights.bin', bytes: weights.byteLength, sha256: sha256(weights) }]);
    expect(man.version).toBe(v1);
    expect(man.name).toBe('alpaca');

    const m = await loadModel(TARGET);
    expect(m.version).toBe(v1);
    expect(m.uri).toBe(r.uri);
    expect(m.manifest.quantization?.dtype).toBe('float16');
    m.model.dispose();
    expect(await checkForUpdate(TARGET, m.etag)).toEqual({ changed: false });
  });

  it('stores but does not promote a worse model, says why, and --force overrides', async () => {
    const r = await publishModel(worse, TARGET, { log, tolerance: 0.05 });
    expect(r.promoted).toBe(false);
    expect(r.reason).toMatch(/not promoted: val accuracy 0\.7000 < current .* 0\.9000 - tolerance 0\.05/);
    expect((await readCurrent('edgetune', 'models/alpaca')).current?.version).toBe(v1);
    // The stored version is complete and loadable by pinning it.
    const pinned = await loadModel(r.uri);
    expect(pinned.version).toBe(r.version);
    pinned.model.dispose();

    const forced = await publishModel(worse, TARGET, { log, force: true, quantize: 'none' });
    expect(forced.promoted).toBe(true);
    expect(forced.reason).toMatch(/^forced/);
    expect(forced.quantization.weightBytes).toBe(forced.quantization.unquantizedWeightBytes);
    const upd = await checkForUpdate(TARGET, 'some-old-etag');
    expect(upd).toMatchObject({ changed: true, version: forced.version });
  });

  it('lists versions, rolls back and promotes by hand', async () => {
    const { versions, current } = await listVersions(TARGET);
    expect(versions).toHaveLength(3);
    expect(versions.map((v) => v.version)).toEqual([...versions.map((v) => v.version)].sort());
    expect(versions.every((v) => v.complete)).toBe(true);
    expect(versions.filter((v) => v.current).map((v) => v.version)).toEqual([current?.version]);

    const back = await rollback(TARGET);
    expect(back.version).toBe(v1);
    expect((await loadModel(TARGET)).version).toBe(v1);
    await expect(rollback(TARGET)).rejects.toThrow(/nothing to roll back to/);

    const unpromoted = versions.find((v) => !v.current && v.version !== v1)!;
    const p = await promoteVersion(TARGET, unpromoted.version);
    expect(p.version).toBe(unpromoted.version);
    expect(p.history[0].version).toBe(v1);
    await expect(promoteVersion(TARGET, 'nope')).rejects.toThrow(/not a version name/);
    await promoteVersion(TARGET, v1);
  });

  it('refuses quantization that costs more accuracy than the tolerance, leaving current.json alone', async () => {
    const before = (await readCurrent('edgetune', 'models/alpaca')).etag;
    let calls = 0;
    const evaluate = async () => (calls++ === 0 ? 0.9 : 0.88);
    await expect(publishModel(good, TARGET, { log, quantize: 'uint8', evaluate })).rejects.toThrow(
      /drops accuracy from 0\.9000 to 0\.8800/,
    );
    expect(calls).toBe(2);
    expect((await readCurrent('edgetune', 'models/alpaca')).etag).toBe(before);
  });

  it('refuses a model folder that does not reproduce its verification.json', async () => {
    const { cp, readFile, writeFile } = await import('node:fs/promises');
    const bad = path.join(env.tmp, 'bad-verification');
    await cp(good, bad, { recursive: true });
    const v = JSON.parse(await readFile(path.join(bad, 'verification.json'), 'utf8'));
    v.probabilities[0] = [v.probabilities[0][1], v.probabilities[0][0]];
    await writeFile(path.join(bad, 'verification.json'), JSON.stringify(v));
    const before = (await readCurrent('edgetune', 'models/alpaca')).etag;
    await expect(publishModel(bad, TARGET, { log, force: true })).rejects.toThrow(/does not reproduce verification\.json/);
    expect((await readCurrent('edgetune', 'models/alpaca')).etag).toBe(before);
  });

  it('uint8 quantization is about a quarter of the bytes and loads through tfjs dequantization', async () => {
    const r = await publishModel(good, 's3://edgetune/models/u8', { log, quantize: 'uint8', quantizeTolerance: 1 });
    expect(r.quantization.weightBytes).toBeLessThan(r.quantization.unquantizedWeightBytes / 3.9);
    const m = await loadModel('s3://edgetune/models/u8');
    expect(m.manifest.quantization?.dtype).toBe('uint8');
    m.model.dispose();
  });

  it('a weight file corrupted after upload makes loadModel throw a sha256 ModelIntegrityError', async () => {
    const r = await publishModel(good, 's3://edgetune/models/corrupt', { log });
    const key = `models/corrupt/${r.version}/weights.bin`;
    const w = Buffer.from((await getObject(`s3://edgetune/${key}`)).body);
    w[w.length >> 1] ^= 0x5a;
    await (await sdkClient()).client.send(new PutObjectCommand({ Bucket: 'edgetune', Key: key, Body: w }));
    const err = await loadModel('s3://edgetune/models/corrupt').catch((e) => e);
    expect(err).toBeInstanceOf(ModelIntegrityError);
    expect(err.message).toMatch(/weights\.bin: sha256 mismatch: expected [0-9a-f]{64}/);
    // Promoting the corrupted version by hand is refused for the same reason.
    await expect(promoteVersion('s3://edgetune/models/corrupt', r.version)).rejects.toThrow(/sha256 mismatch/);
  });

  it('a reader polling current.json during a publish only ever loads complete versions', async () => {
    const seen = new Set<string>();
    let done = false;
    let loads = 0;
    const reader = (async () => {
      let etag: string | undefined;
      while (!done) {
        const u = await checkForUpdate(TARGET, etag);
        if (u.changed) {
          const m = await loadModel(TARGET); // throws on any missing or partial file
          seen.add(m.version);
          etag = m.etag;
          m.model.dispose();
          loads++;
        }
        await new Promise((r) => setTimeout(r, 5));
      }
    })();
    const r = await publishModel(good, TARGET, { log, force: true });
    await new Promise((res) => setTimeout(res, 50));
    done = true;
    await reader;
    expect(r.promoted).toBe(true);
    expect(loads).toBeGreaterThanOrEqual(2);
    expect([...seen].sort()).toEqual(expect.arrayContaining([r.version]));
    for (const v of seen) expect(v).toMatch(VERSION_RE);
  });
});

describe('S3 stopped in the middle of a publish', () => {
  it('fails with a clear message after retries, current.json unchanged, rerun succeeds', async () => {
    const before = await readCurrent('edgetune', 'models/alpaca');
    let stopping: Promise<void> | undefined;
    const t0 = performance.now();
    const err = await publishModel(good, TARGET, {
      force: true,
      log: (l) => {
        if (l.includes('uploading') && !stopping) stopping = env.s3.close();
      },
    }).catch((e) => e);
    const failMs = performance.now() - t0;
    await stopping;
    expect(err).toBeInstanceOf(Error);
    expect(err.message).toMatch(/failed after 3 attempts: .*(ECONNREFUSED|ECONNRESET|socket hang up)/);
    console.log(`publish with S3 stopped failed after ${Math.round(failMs)} ms: ${err.message}`);

    env.s3 = await startS3rver({ port: env.s3.port, dir: env.s3.dir, buckets: ['edgetune'] });
    const after = await readCurrent('edgetune', 'models/alpaca');
    expect(after.current).toEqual(before.current);
    const r = await publishModel(good, TARGET, { force: true });
    expect(r.promoted).toBe(true);
    expect((await readCurrent('edgetune', 'models/alpaca')).current?.version).toBe(r.version);
  });
});
