import { createHash } from 'node:crypto';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { ManifestSchema } from '../core/manifest.js';
import { dataReport } from '../training/data-report.js';
import { type DatasetFile, type DecodedFile, decodeStream, type Split } from '../training/dataset.js';
import { formatDuration, humanReporter, jsonReporter, ProgressClock, type TrainEvent } from '../training/progress.js';
import { dataChecksSection } from '../training/report/data-section.js';
import { reportHtml } from '../training/report/html.js';
import { makeImage } from './helpers/images.js';

const dirs: string[] = [];
afterAll(() => Promise.all(dirs.map((d) => rm(d, { recursive: true, force: true }))));

const file = (relPath: string, label: number, sha256?: string): DatasetFile => ({ relPath, absPath: `/x/${relPath}`, label, sha256 });
const emptySplit = (): Split => ({ train: [], validation: [], test: [] });

describe('decodeStream hashes', () => {
  it('sets the sha256 of each file from the bytes it decodes (one read); an unreadable file gets none, an undecodable one does', async () => {
    const root = await mkdtemp(path.join(os.tmpdir(), 'edgetune-hash-'));
    dirs.push(root);
    const files: DatasetFile[] = [];
    for (let i = 0; i < 4; i++) {
      const p = path.join(root, `${i}.png`);
      await writeFile(p, await makeImage('png', { color: [i * 40, 0, 0] }));
      files.push({ relPath: `${i}.png`, absPath: p, label: 0 });
    }
    await writeFile(path.join(root, 'bad.png'), Buffer.alloc(300_000, 7));
    files.push({ relPath: 'bad.png', absPath: path.join(root, 'bad.png'), label: 0 });
    files.push({ relPath: 'gone.png', absPath: path.join(root, 'gone.png'), label: 0 });
    const out: DecodedFile[] = [];
    for await (const r of decodeStream(files, { size: 8, concurrency: 2 })) out.push(r);
    for (const f of files.slice(0, 5)) {
      const want = createHash('sha256')
        .update(await readFile(f.absPath))
        .digest('hex');
      expect(f.sha256).toBe(want);
      expect(out.find((r) => r.file === f)?.hash).toBe(want);
    }
    expect(out.find((r) => r.file.relPath === 'bad.png')?.error).toBeTruthy();
    expect(files[5].sha256).toBeUndefined();
    expect(out.map((r) => r.index)).toEqual([0, 1, 2, 3, 4, 5]);
  });
});

describe('dataReport', () => {
  it('counts per class and side, names the smallest and largest class and warns on imbalance and tiny classes', () => {
    const split = emptySplit();
    for (let i = 0; i < 30; i++) split.train.push(file(`a/${i}.png`, 0, `a${i}`));
    for (let i = 0; i < 6; i++) split.validation.push(file(`a/v${i}.png`, 0, `av${i}`));
    for (let i = 0; i < 4; i++) split.train.push(file(`b/${i}.png`, 1, `b${i}`));
    split.test.push(file('b/t.png', 1, 'bt'));
    const r = dataReport(['a', 'b'], split);
    expect(r.perClass).toEqual({ a: { train: 30, validation: 6, test: 0 }, b: { train: 4, validation: 0, test: 1 } });
    expect(r.smallest).toEqual({ class: 'b', count: 5 });
    expect(r.largest).toEqual({ class: 'a', count: 36 });
    expect(r.imbalance).toBeCloseTo(7.2);
    expect(r.duplicates).toMatchObject({ groups: 0, files: 0, crossClass: 0, crossSplit: 0, examples: [] });
    expect(r.warnings).toEqual([
      'class imbalance: the largest class a has 36 images, 7.2x the smallest b (5)',
      'few images: b (5); 10 or more per class is advised',
      'no validation images for class(es) b: their validation metrics are undefined',
    ]);
    const balanced = emptySplit();
    for (let i = 0; i < 20; i++) balanced.train.push(file(`a${i}`, 0, `a${i}`), file(`b${i}`, 1, `b${i}`));
    balanced.validation.push(file('va', 0, 'va'), file('vb', 1, 'vb'));
    expect(dataReport(['a', 'b'], balanced).warnings).toEqual([]);
  });

  it('finds exact duplicates within a class, across classes and across the split, the leaks first', () => {
    const split = emptySplit();
    for (let i = 0; i < 12; i++) split.train.push(file(`a/${i}.png`, 0, `a${i}`), file(`b/${i}.png`, 1, `b${i}`));
    split.validation.push(file('a/v.png', 0, 'av'), file('b/v.png', 1, 'bv'));
    split.train.push(file('a/copy-of-0.png', 0, 'a0')); // same class, same side: harmless
    split.train.push(file('b/dup.png', 1, 'a1')); // the same photo labelled a and b
    split.train.push(file('a/leak.png', 0, 'av')); // a validation photo in training
    split.test.push(file('b/t.png', 1, 'bv')); // validation and test share a photo
    split.train.push(file('a/unread.png', 0));
    const r = dataReport(['a', 'b'], split);
    expect(r.duplicates).toMatchObject({ groups: 4, files: 8, crossClass: 1, crossSplit: 2 });
    // Cross-class first, then cross-split (by first file), then the harmless ones.
    expect(r.duplicates.examples.map((e) => e.sha256)).toEqual(['a1', 'av', 'bv', 'a0']);
    expect(r.duplicates.examples.find((e) => e.sha256 === 'av')?.files).toEqual([
      { file: 'a/leak.png', class: 'a', split: 'train' },
      { file: 'a/v.png', class: 'a', split: 'validation' },
    ]);
    expect(r.unhashed).toBe(1);
    expect(r.warnings).toContain('1 set(s) of identical files carry different labels, e.g. a/1.png (a, train) = b/dup.png (b, train)');
    expect(
      r.warnings.find((w) =>
        w.startsWith('2 set(s) of identical files are on more than one side of the split (a leak between training, validation and test)'),
      ),
    ).toBeDefined();
    expect(r.warnings).toContain('1 file(s) could not be read to check for duplicates');
  });

  it('caps the examples kept, and the manifest and report take the result (escaped)', () => {
    const split = emptySplit();
    for (let i = 0; i < 40; i++) split.train.push(file(`a/${i}.png`, 0, `h${i % 10}`), file(`b/<b>${i}.png`, 1, `g${i}`));
    split.validation.push(file('a/v.png', 0, 'v'), file('b/v.png', 1, 'w'));
    const r = dataReport(['a', '<b>'], split, {
      maxExamples: 3,
      maxFilesPerExample: 2,
      labels: { file: 'labels.csv', unlisted: ['x.png'] },
    });
    expect(r.duplicates.groups).toBe(10);
    expect(r.duplicates.examples).toHaveLength(3);
    expect(r.duplicates.examples[0]).toMatchObject({ count: 4 });
    expect(r.duplicates.examples[0].files).toHaveLength(2);
    expect(r.labels).toEqual({ file: 'labels.csv', unlisted: 1, unlistedExamples: ['x.png'] });
    expect(r.warnings).toContain('1 image(s) in the data folder are not listed in labels.csv and are not used, e.g. x.png');
    const schema = ManifestSchema.shape.dataset.shape.report;
    expect(schema.parse(JSON.parse(JSON.stringify(r)))).toEqual(r);
    const html = dataChecksSection({ dataset: { report: r } } as never);
    expect(html).toContain('<h2>Data checks</h2>');
    expect(html).toContain('<code>&lt;b&gt;</code>');
    expect(html).not.toContain('<b>');
    expect(html).toContain('first 3 of 10 sets');
    expect(html).toMatch(/10 set\(s\) of identical files \(40 files\)/);
    expect(dataChecksSection({ dataset: {} } as never)).toBe('');
  });

  it('reportHtml includes the section', () => {
    const split = emptySplit();
    split.train.push(file('a/1.png', 0, 'x'), file('b/1.png', 1, 'x'));
    split.validation.push(file('a/2.png', 0, 'y'), file('b/2.png', 1, 'z'));
    const r = dataReport(['a', 'b'], split);
    const m = {
      name: 'n',
      version: 'v',
      createdAt: 't',
      classes: ['a', 'b'],
      output: 'sigmoid',
      input: { size: 96, channels: 3, resize: 'stretch' },
      preprocessing: { scale: 1 / 127.5, offset: -1, inModel: true },
      backbone: { arch: 'mobilenet_v2', alpha: 0.35, weights: { source: 's', kind: 'k' }, fineTuneAt: 120 },
      hyperparameters: {},
      dataset: { source: 'd', fingerprint: 'f', counts: { train: 2, validation: 2, perClass: { a: 2, b: 2 } }, skipped: [], report: r },
      history: [],
      metrics: { frozen: { valAccuracy: 1, valLoss: 0, perClass: [], confusion: [] } },
      timings: {},
      backend: 'wasm',
      files: [],
    };
    const html = reportHtml(m as never, { confusion: 'confusion.svg' });
    expect(html).toContain('Data checks');
    expect(html).toContain('carry different labels');
  });
});

describe('progress rate and ETA', () => {
  it('ProgressClock measures from the stage start, restarts when a count goes back, and gives epochs a phase ETA', () => {
    let now = 0;
    const clock = new ProgressClock(() => now);
    clock.enrich({ type: 'stage', stage: 'decoding 100 images', total: 100 });
    now = 2000;
    expect(clock.enrich({ type: 'progress', stage: 'decode', done: 10, total: 100 })).toMatchObject({ rate: 5, etaSeconds: 18 });
    now = 4000;
    expect(clock.enrich({ type: 'progress', stage: 'decode', done: 30, total: 100 })).toMatchObject({ rate: 7.5 });
    // A stage without a stage event, that runs again (done goes back): counted from its first event.
    now = 10_000;
    expect(clock.enrich({ type: 'progress', stage: 'decode', done: 5, total: 50 })).not.toHaveProperty('rate');
    now = 12_000;
    expect(clock.enrich({ type: 'progress', stage: 'decode', done: 25, total: 50 })).toMatchObject({ rate: 10, etaSeconds: 2.5 });
    const epoch = (n: number, seconds: number): TrainEvent => ({
      type: 'epoch',
      phase: 'fineTune',
      epoch: n,
      epochs: 5,
      loss: 1,
      accuracy: 0.5,
      valLoss: 1,
      valAccuracy: 0.5,
      seconds,
    });
    expect(clock.enrich(epoch(1, 10))).toMatchObject({ etaSeconds: 40 });
    expect(clock.enrich(epoch(2, 20))).toMatchObject({ etaSeconds: 45 });
    expect(clock.enrich(epoch(5, 30))).toMatchObject({ etaSeconds: 0 });
    expect(formatDuration(42.4)).toBe('42 s');
    expect(formatDuration(185)).toBe('3 min 05 s');
    expect(formatDuration(3720)).toBe('1 h 02 min');
  });

  it('the JSON events carry rate and etaSeconds; plain output prints progress lines with the ETA', async () => {
    const lines: string[] = [];
    const json = jsonReporter((l) => lines.push(l), 0);
    json({ type: 'stage', stage: 'views', total: 4 });
    await new Promise((r) => setTimeout(r, 30));
    json({ type: 'progress', stage: 'views', done: 2, total: 4 });
    const e = JSON.parse(lines[1]);
    expect(e.rate).toBeGreaterThan(0);
    expect(e.rate).toBeLessThan(2 / 0.03 + 1);
    expect(e.etaSeconds).toBeCloseTo(2 / e.rate, 6);

    let out = '';
    const write = (s: string) => {
      out += s;
      return true;
    };
    const stream = { isTTY: false, write } as unknown as NodeJS.WriteStream;
    const human = humanReporter(stream, 0);
    human({ type: 'stage', stage: 'boundary (epoch 1)', total: 100 });
    await new Promise((r) => setTimeout(r, 30));
    human({ type: 'progress', stage: 'boundary', done: 40, total: 100 });
    human({ type: 'epoch', phase: 'frozen', epoch: 1, epochs: 3, loss: 1, accuracy: 0.5, valLoss: 1, valAccuracy: 0.5, seconds: 61 });
    expect(out).toMatch(/^boundary \(epoch 1\)\.\.\.\n {2}boundary 40\/100 \(\d+\/s, ETA \d+ s\)\n/);
    expect(out).toMatch(/frozen {4}epoch {2}1\/3 .*\(61\.0 s, phase ETA 2 min 02 s\)\n$/);
  });

  it('the TTY bar shows the rate and ETA', async () => {
    let out = '';
    const write = (s: string) => {
      out += s;
      return true;
    };
    const ok = () => true;
    const stream = {
      isTTY: true,
      columns: 160,
      write,
      cursorTo: ok,
      clearLine: ok,
      moveCursor: ok,
      on: () => stream,
      removeListener: () => stream,
    };
    const human = humanReporter(stream as unknown as NodeJS.WriteStream);
    human({ type: 'stage', stage: 'decoding 10 images', total: 10 });
    await new Promise((r) => setTimeout(r, 50));
    human({ type: 'progress', stage: 'decode', done: 5, total: 10 });
    human({ type: 'info', message: 'next' });
    expect(out).toMatch(/decoding 10 images .* 5\/10 \| \d+\/s, ETA \d+ s/);
  });
});
