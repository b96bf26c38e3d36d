import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { initBackend } from '../core/backend.js';
import { ManifestSchema } from '../core/manifest.js';
import { runTraining } from '../training/job.js';
import { resolveTrainOptions } from '../training/options.js';
import { jsonReporter } from '../training/progress.js';
import { makeImage } from './helpers/images.js';

let dir: string;
afterAll(() => rm(dir, { recursive: true, force: true }));

// One tiny run from a JSON Lines manifest (offline fallback weights), through the job as the CLI runs it.
describe('train --labels (tiny, end to end)', () => {
  it('records the validation files and the data checks in the manifest and the report; JSON progress carries rate and ETA', async () => {
    process.env.EDGETUNE_OFFLINE = '1';
    delete process.env.EDGETUNE_BASE_WEIGHTS;
    await initBackend();
    dir = await mkdtemp(path.join(os.tmpdir(), 'edgetune-labels-train-'));
    const data = path.join(dir, 'photos');
    await mkdir(data);
    const rows: string[] = [];
    for (let i = 0; i < 16; i++) {
      const red = i % 2 === 0;
      const name = `p${String(i).padStart(2, '0')}.png`;
      await writeFile(
        path.join(data, name),
        await makeImage('png', { width: 32, height: 32, color: red ? [220, 20 + i, 30] : [20, 30 + i, 220] }),
      );
      rows.push(JSON.stringify({ image: name, label: red ? 'red' : 'blue', ...(i < 4 ? { split: 'validation' } : {}) }));
    }
    await writeFile(path.join(data, 'labels.jsonl'), `${rows.join('\n')}\n`);
    const out = path.join(dir, 'model');
    const lines: string[] = [];
    const opts = resolveTrainOptions({
      data,
      labels: 'labels.jsonl',
      out,
      imageSize: 32,
      batchSize: 8,
      epochs: 2,
      fineTuneEpochs: 1,
      workers: 0,
      validationSplit: 0.1,
      json: true,
    });
    const { model } = await runTraining(
      opts,
      jsonReporter((l) => lines.push(l), 0),
    );
    model.dispose();
    const manifest = ManifestSchema.parse(JSON.parse(await readFile(path.join(out, 'manifest.json'), 'utf8')));
    expect(manifest.classes).toEqual(['blue', 'red']);
    expect(manifest.dataset.validationFiles).toEqual(expect.arrayContaining(['p00.png', 'p01.png', 'p02.png', 'p03.png']));
    expect(manifest.dataset.validationFiles).toHaveLength(manifest.dataset.counts.validation);
    expect(manifest.dataset.report?.labels).toEqual({ file: 'labels.jsonl', unlisted: 0, unlistedExamples: [] });
    expect(manifest.dataset.report?.perClass.red.validation).toBeGreaterThanOrEqual(2);
    expect(manifest.hyperparameters).not.toHaveProperty('labels');
    const html = await readFile(path.join(out, 'report', 'index.html'), 'utf8');
    expect(html).toContain('<h2>Data checks</h2>');
    expect(html).toContain('Labels from <code>labels.jsonl</code>');
    const events = lines.map((l) => JSON.parse(l));
    const decode = events.filter((e) => e.type === 'progress' && e.stage === 'decode' && e.done === e.total);
    expect(decode[0]?.rate).toBeGreaterThan(0);
    expect(decode[0]?.etaSeconds).toBe(0);
    const epochs = events.filter((e) => e.type === 'epoch');
    expect(epochs).toHaveLength(3);
    expect(epochs[0].etaSeconds).toBeGreaterThan(0);
    expect(epochs.at(-1).etaSeconds).toBe(0);
  }, 300_000);
});
