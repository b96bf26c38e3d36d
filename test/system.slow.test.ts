import { mkdtemp } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { locations, type Watcher, watchUploads } from '../cli/local-system.js';
import { ensureS3, type S3Handle } from '../core/s3/client.js';
import { configFromEnv } from '../functions/config.js';
import { silentLogger } from '../functions/logger.js';
import { type NodeServer, startNodeServer } from '../functions/node.js';
import { uploadDataset } from '../training/dataset-s3.js';
import { makeDataset } from './helpers/images.js';

// The whole local system, end to end: embedded S3 -> upload -> the watcher trains and publishes
// -> the API serves version 1 -> more photos -> exactly one retraining -> version 2, no restart.
describe('local system: upload, retrain, serve the new version', () => {
  let dir: string;
  let s3: S3Handle;
  let watcher: Watcher;
  let server: NodeServer;
  const submitted: string[] = [];
  const logs: string[] = [];
  const loc = locations('pets');

  beforeAll(async () => {
    process.env.EDGETUNE_OFFLINE = '1';
    process.env.EDGETUNE_BASE_WEIGHTS = '';
    delete process.env.EDGETUNE_S3_ENDPOINT;
    dir = await mkdtemp(path.join(os.tmpdir(), 'edgetune-system-'));
    s3 = await ensureS3({ dir: path.join(dir, 's3'), log: () => {} });
    watcher = watchUploads(s3, {
      quietMs: 1500,
      workDir: path.join(dir, 'work'),
      // --force: the promotion gate may keep v1 on such a tiny validation set; here we test the plumbing.
      extraArgs: [
        '--image-size',
        '32',
        '--batch-size',
        '8',
        '--epochs',
        '2',
        '--fine-tune-epochs',
        '1',
        '--workers',
        '0',
        '--quantize',
        'none',
        '--force',
      ],
      log: (line) => {
        logs.push(line);
        if (line.startsWith('retraining')) submitted.push(line);
      },
      stdio: 'ignore',
    });
    const config = configFromEnv({ ...process.env, MODEL_URI: loc.modelUri, MODEL_REFRESH_SECONDS: '1' });
    server = await startNodeServer({ config, port: 0, hostname: '127.0.0.1', log: silentLogger });
  }, 60_000);

  afterAll(async () => {
    await server?.close();
    await watcher?.close();
    await s3?.close();
  });

  async function waitFor<T>(what: string, get: () => Promise<T | undefined>, timeoutMs: number): Promise<T> {
    const end = Date.now() + timeoutMs;
    while (Date.now() < end) {
      const v = await get().catch(() => undefined);
      if (v !== undefined) return v;
      await new Promise((r) => setTimeout(r, 500));
    }
    throw new Error(`timed out waiting for ${what}; watcher log:\n${logs.join('\n')}`);
  }

  const servedVersion = async () => {
    const r = await fetch(`${server.url}/v1/model`);
    return r.ok ? ((await r.json()) as { version: string }).version : undefined;
  };

  it('trains once per settled upload and the API moves to the new version without a restart', async () => {
    expect(
      (await fetch(`${server.url}/v1/classify`, { method: 'POST', body: new Uint8Array([1]), headers: { 'content-type': 'image/png' } }))
        .status,
    ).toBe(503);

    const data = await makeDataset(path.join(dir, 'data'), { cat: 10, dog: 10 }, 36);
    await uploadDataset(data, loc.datasetUri);
    const v1 = await waitFor('version 1', servedVersion, 150_000);
    expect(submitted).toHaveLength(1);

    // More photos, in two uploads close together: still one run.
    const more = await makeDataset(path.join(dir, 'more'), { cat: 3, dog: 3 }, 44);
    await uploadDataset(more, loc.datasetUri);
    const more2 = await makeDataset(path.join(dir, 'more2'), { cat: 2, dog: 2 }, 40);
    await uploadDataset(more2, loc.datasetUri);
    const v2 = await waitFor(
      'version 2',
      async () => {
        const v = await servedVersion();
        return v && v !== v1 ? v : undefined;
      },
      150_000,
    );
    expect(v2 > v1).toBe(true);
    await watcher.trigger.drain();
    expect(submitted).toHaveLength(2);

    const classify = await fetch(`${server.url}/v1/classify`, {
      method: 'POST',
      body: (await import('node:fs')).readFileSync(path.join(data, 'cat', 'img_0.png')),
      headers: { 'content-type': 'image/png' },
    });
    expect(classify.status).toBe(200);
    const body = (await classify.json()) as { model: { version: string }; label: string };
    expect(body.model.version).toBe(v2);
    expect(['cat', 'dog']).toContain(body.label);
  }, 400_000);
});
