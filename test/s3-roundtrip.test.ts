import { execFile } from 'node:child_process';
import { writeFile } from 'node:fs/promises';
import path from 'node:path';
import { promisify } from 'node:util';
import { beforeAll, describe, expect, it } from 'vitest';
import { initBackend } from '../core/backend.js';
import { buildClassifier } from '../core/classifier.js';
import { checkForUpdate, loadModel, ModelIntegrityError } from '../core/model-loader.js';
import { ensureS3, getObject, parseS3Uri, putObject, s3ChildEnv } from '../core/s3/client.js';
import { registerS3Router } from '../core/s3/io-handler.js';
import { tf } from '../core/tf.js';
import { useEmbeddedS3 } from './helpers/embedded-s3.js';
import { makeModelDir } from './helpers/model-dir.js';
import { REPO_DIR } from './helpers/shared.js';

const env = useEmbeddedS3('s3-rt');

beforeAll(async () => {
  await initBackend();
  registerS3Router();
});

describe('s3:// URIs', () => {
  it('parses bucket and key and rejects garbage', () => {
    expect(parseS3Uri('s3://edgetune/models/x/')).toEqual({ bucket: 'edgetune', key: 'models/x/' });
    expect(parseS3Uri('s3://edgetune')).toEqual({ bucket: 'edgetune', key: '' });
    expect(() => parseS3Uri('http://edgetune/x')).toThrow(/not an S3 URI/);
    expect(() => parseS3Uri('s3://Bad_Bucket/x')).toThrow(/invalid S3 bucket/);
  });

  it('ensureS3 uses the configured endpoint instead of starting another server', async () => {
    const h = await ensureS3();
    expect(h).toMatchObject({ embedded: false, endpoint: env.s3.endpoint });
    await h.close();
  });

  it('the embedded S3 is used without writing the environment; a child process reaches it through s3ChildEnv()', async () => {
    const saved = { ...process.env };
    for (const k of Object.keys(process.env)) if (k.startsWith('EDGETUNE_S3_') || k.startsWith('AWS_')) delete process.env[k];
    const before = { ...process.env };
    const h = await ensureS3({ dir: path.join(env.tmp, 's3-embedded'), log: () => {} });
    try {
      expect(h.embedded).toBe(true);
      expect({ ...process.env }).toEqual(before);
      await putObject('s3://edgetune/scratch/child.txt', Buffer.from('from the parent'));
      expect((await getObject('s3://edgetune/scratch/child.txt')).body.toString()).toBe('from the parent');
      const script = path.join(env.tmp, 'child.mts');
      await writeFile(
        script,
        `import { getObject } from ${JSON.stringify(path.join(REPO_DIR, 'core/s3/client.ts'))};\n` +
          `process.stdout.write((await getObject('s3://edgetune/scratch/child.txt')).body.toString());\n`,
      );
      // Asynchronously: the S3 answers from this process's event loop.
      const { stdout } = await promisify(execFile)(process.execPath, ['--import', 'tsx', script], {
        cwd: REPO_DIR,
        env: { ...process.env, ...s3ChildEnv() },
        encoding: 'utf8',
        timeout: 50_000,
      });
      expect(stdout).toBe('from the parent');
    } finally {
      await h.close();
      Object.assign(process.env, saved);
    }
    expect(s3ChildEnv()).toEqual({});
  }, 60_000);
});

describe('tfjs s3:// IOHandler', () => {
  it('round-trips model.save / tf.loadLayersModel with identical predictions and no tensor leak', async () => {
    const before = tf.memory().numTensors;
    const model = buildClassifier({ alpha: 0.35, inputSize: 32, numClasses: 2 });
    await model.save('s3://edgetune/scratch/roundtrip');
    const loaded = await tf.loadLayersModel('s3://edgetune/scratch/roundtrip/model.json');
    const x = tf.randomUniform([2, 32, 32, 3], 0, 255);
    const [a, b] = [model.predict(x) as tf.Tensor, loaded.predict(x) as tf.Tensor];
    expect(Array.from(await b.data())).toEqual(Array.from(await a.data()));
    tf.dispose([x, a, b]);
    model.dispose();
    loaded.dispose();
    expect(tf.memory().numTensors).toBe(before);
  });
});

describe('loadModel', () => {
  it('loads a local folder with verification, and reports a corrupted weight file', async () => {
    const dir = await makeModelDir(path.join(env.tmp, 'local-model'), { inputSize: 32 });
    const m = await loadModel(dir);
    expect(m.manifest.classes).toEqual(['alpaca', 'not_alpaca']);
    expect(m.etag).toBe(m.version);
    m.model.dispose();
    expect(await checkForUpdate(dir, m.etag)).toEqual({ changed: false });
    const { readFile, writeFile } = await import('node:fs/promises');
    const w = await readFile(path.join(dir, 'weights.bin'));
    w[100] ^= 0xff;
    await writeFile(path.join(dir, 'weights.bin'), w);
    await expect(loadModel(dir)).rejects.toThrow(ModelIntegrityError);
    await expect(loadModel(dir)).rejects.toThrow(/sha256 mismatch/);
  });

  it('reports a missing pointer clearly', async () => {
    await expect(loadModel('s3://edgetune/models/nothing-here')).rejects.toThrow(/current\.json does not exist/);
  });
});
