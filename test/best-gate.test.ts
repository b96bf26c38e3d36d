import { readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { initBackend } from '../core/backend.js';
import type { Manifest } from '../core/manifest.js';
import { publishModel, readCurrent } from '../store/model-store.js';
import { useEmbeddedS3 } from './helpers/embedded-s3.js';
import { makeModelDir } from './helpers/model-dir.js';

// The promotion gate compares test-split accuracies (selection-free) when both versions have one.
const env = useEmbeddedS3('best-gate');
const TARGET = 's3://edgetune/models/gate';

async function modelWith(name: string, valAccuracy: number, testAccuracy: number | undefined, seed: number): Promise<string> {
  const dir = await makeModelDir(path.join(env.tmp, name), { inputSize: 32, valAccuracy, seed });
  const file = path.join(dir, 'manifest.json');
  const m = JSON.parse(await readFile(file, 'utf8')) as Manifest;
  if (testAccuracy !== undefined) {
    const final = m.metrics.fineTuned ?? m.metrics.frozen;
    m.metrics.test = { ...final, valAccuracy: testAccuracy };
    m.dataset.counts.test = 40;
  }
  await writeFile(file, JSON.stringify(m, null, 2));
  return dir;
}

beforeAll(async () => {
  await initBackend();
});

describe('promotion gate with test figures', () => {
  it('uses test accuracy when both have it, validation accuracy otherwise', async () => {
    const log = () => {};
    const first = await publishModel(await modelWith('first', 0.9, 0.9, 1), TARGET, { log, quantize: 'none' });
    expect(first.promoted).toBe(true);

    // Better on validation, worse on the test split: refused on the test figure.
    const flattered = await publishModel(await modelWith('flattered', 0.97, 0.6, 2), TARGET, { log, quantize: 'none' });
    expect(flattered.promoted).toBe(false);
    expect(flattered.reason).toMatch(/not promoted: test accuracy 0\.6000 < current .*'s 0\.9000 - tolerance 0\.01/);

    // Worse on validation, better on test: promoted on the test figure.
    const honest = await publishModel(await modelWith('honest', 0.8, 0.92, 3), TARGET, { log, quantize: 'none' });
    expect(honest.promoted).toBe(true);
    expect(honest.reason).toMatch(/^test accuracy 0\.9200 >= current/);
    expect((await readCurrent('edgetune', 'models/gate')).current?.version).toBe(honest.version);

    // A version without a test split is compared on validation, as before.
    const plain = await publishModel(await modelWith('plain', 0.5, undefined, 4), TARGET, { log, quantize: 'none' });
    expect(plain.promoted).toBe(false);
    expect(plain.reason).toMatch(/not promoted: val accuracy/);
  }, 120_000);
});
