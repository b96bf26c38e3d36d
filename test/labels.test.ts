import { mkdir, mkdtemp, rm, symlink, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { CacheBudget, type RunCache } from '../training/cache-budget.js';
import { datasetFingerprint, decodeStream, listDataset, splitDataset } from '../training/dataset.js';
import { type ListedData, listAndSplit, reportDataQuality } from '../training/dataset-listing.js';
import { listFromLabels, parseCsvLabels, parseJsonlLabels, parseLabels, resolveLabelsFile } from '../training/label-manifest.js';
import { resolveTrainOptions } from '../training/options.js';
import type { TrainEvent } from '../training/progress.js';
import { SpillArea } from '../training/spill.js';
import { loadData } from '../training/train-data.js';
import { makeDataset, makeImage } from './helpers/images.js';
import { ALPACA_DIR, hasAlpaca, skipReason } from './helpers/shared.js';

/** Reads (decodes, small) every listed file, which hashes it, then builds the data report. */
async function readAndReport(listed: ListedData) {
  for await (const _ of decodeStream(listed.listing.files, { size: 8 })) {
    // each file read once
  }
  return reportDataQuality(listed, () => {});
}

const dirs: string[] = [];
const tmp = async () => {
  const d = await mkdtemp(path.join(os.tmpdir(), 'edgetune-labels-'));
  dirs.push(d);
  return d;
};
afterAll(() => Promise.all(dirs.map((d) => rm(d, { recursive: true, force: true }))));

/** A flat folder of distinct PNGs (each a different colour), named as given. */
async function flatFolder(names: string[]): Promise<string> {
  const root = await tmp();
  for (const [i, n] of names.entries()) {
    await mkdir(path.dirname(path.join(root, n)), { recursive: true });
    await writeFile(
      path.join(root, n),
      await makeImage('png', { width: 12, height: 12, color: [(i * 37) % 256, (i * 91) % 256, (i * 13) % 256] }),
    );
  }
  return root;
}

/** The whole (small) dataset in memory, as a default run keeps it. */
const memoryCache = (): RunCache => ({ budget: new CacheBudget(1 << 30), spill: new SpillArea(os.tmpdir()) });

describe('parsing label manifests', () => {
  it('reads CSV with a BOM, CRLF, quoted fields (commas, quotes, newlines in paths) and the header name variants', () => {
    const csv = '\uFEFFFilename,Class,split\r\n"photos/a, b.png",cat,train\r\n"q""uote.png",dog,\r\n./c.png,dog,TEST\r\n\r\n';
    expect(parseCsvLabels(csv, 'labels.csv')).toEqual([
      { where: 'line 2', path: 'photos/a, b.png', label: 'cat', split: 'train' },
      { where: 'line 3', path: 'q"uote.png', label: 'dog', split: undefined },
      { where: 'line 4', path: 'c.png', label: 'dog', split: 'test' },
    ]);
    expect(parseCsvLabels('image,label\nx.jpg,a\n', 'l.csv')[0]).toMatchObject({ path: 'x.jpg', label: 'a' });
    expect(parseCsvLabels('file,label\nx.jpg,a\n', 'l.csv')[0]).toMatchObject({ path: 'x.jpg', label: 'a' });
    expect(parseLabels('path\tlabel\nx y.jpg\ta\n', 'labels.tsv')[0]).toMatchObject({ path: 'x y.jpg', label: 'a' });
  });

  it('reads JSON Lines with image/label, numeric labels and an optional split', () => {
    const text =
      '{"image": "a/1.jpg", "label": "cat"}\n\n{"path": "2.jpg", "class": 3, "split": "val"}\n{"file": "3.jpg", "label": ["dog"]}\n';
    expect(parseJsonlLabels(text, 'l.jsonl')).toEqual([
      { where: 'line 1', path: 'a/1.jpg', label: 'cat', split: undefined },
      { where: 'line 3', path: '2.jpg', label: '3', split: 'validation' },
      { where: 'line 4', path: '3.jpg', label: 'dog', split: undefined },
    ]);
  });

  it('refuses multi-label rows, naming the row', () => {
    expect(() => parseCsvLabels('path,label\na.jpg,cat\nb.jpg,cat;dog\n', 'labels.csv')).toThrow(
      /labels\.csv line 3: several labels for one image \("cat;dog"\); multi-label/,
    );
    expect(() => parseCsvLabels('path,label\nb.jpg,"cat|dog"\n', 'labels.csv')).toThrow(/line 2: several labels/);
    expect(() => parseCsvLabels('path,label\na.jpg,cat\nb.jpg,cat,dog\n', 'labels.csv')).toThrow(
      /line 3: the row has a different number of fields than the header \(several labels/,
    );
    expect(() => parseCsvLabels('path,label,label2\na.jpg,cat,dog\n', 'labels.csv')).toThrow(
      /line 1 \(header\): several label columns \(label, label2\)/,
    );
    expect(() => parseCsvLabels('path,class,tags\na.jpg,cat,dog\n', 'labels.csv')).toThrow(/several label columns \(class, tags\)/);
    expect(() => parseJsonlLabels('{"image":"a.jpg","label":"x"}\n{"image":"b.jpg","label":["cat","dog"]}\n', 'l.jsonl')).toThrow(
      /l\.jsonl line 2: several labels for one image/,
    );
    expect(() => parseJsonlLabels('{"image":"b.jpg","label":"cat","class":"dog"}\n', 'l.jsonl')).toThrow(
      /line 1: several label fields \(label, class\)/,
    );
  });

  it('names what is wrong with the header, a split value, a JSON line or the file type', () => {
    expect(() => parseCsvLabels('name,label\na.jpg,cat\n', 'l.csv')).toThrow(
      /no path column \(path, file, filename, image\) in name, label/,
    );
    expect(() => parseCsvLabels('path,kind\na.jpg,cat\n', 'l.csv')).toThrow(/no label column \(label, class\)/);
    expect(() => parseCsvLabels('path,label,split\na.jpg,cat,holdout\n', 'l.csv')).toThrow(
      /line 2: split "holdout" is not train, validation or test/,
    );
    expect(() => parseCsvLabels('path,label\n"a.jpg,cat\n', 'l.csv')).toThrow(/l\.csv line 2: Quote Not Closed/);
    expect(() => parseCsvLabels('', 'l.csv')).toThrow(/empty/);
    expect(() => parseJsonlLabels('{"image":"a.jpg","label":"x"}\n{oops\n', 'l.jsonl')).toThrow(/line 2: not valid JSON/);
    expect(() => parseJsonlLabels('["a.jpg","x"]\n', 'l.jsonl')).toThrow(/line 1: expected a JSON object/);
    expect(() => parseLabels('x', 'labels.xlsx')).toThrow(/unknown label manifest type \.xlsx/);
    expect(() => parseCsvLabels(`path,label\na.jpg,${'x'.repeat(201)}\n`, 'l.csv')).toThrow(
      /line 2: the label is longer than 200 characters/,
    );
    expect(() => parseJsonlLabels('{"image":"a.jpg","label":"a\\u0007b"}\n', 'l.jsonl')).toThrow(
      /line 1: the label has control characters/,
    );
    expect(() => parseJsonlLabels('{"image":"a.jpg","label":{"x":1}}\n', 'l.jsonl')).toThrow(/line 1: the label must be a string/);
  });

  it('refuses paths that leave the data folder (hostile manifests)', () => {
    for (const [p, why] of [
      ['../secret.png', /leaves the data folder/],
      ['a/../../secret.png', /leaves the data folder/],
      ['/etc/passwd.png', /is absolute/],
      ['C:/x.png', /is absolute/],
      ['a\\..\\x.png', /backslash/],
      ['a//x.png', /empty segments/],
    ] as const) {
      expect(() => parseCsvLabels(`path,label\n"${p}",cat\n`, 'l.csv'), p).toThrow(why);
      expect(() => parseJsonlLabels(`${JSON.stringify({ image: p, label: 'cat' })}\n`, 'l.jsonl'), p).toThrow(why);
    }
  });
});

describe('listFromLabels', () => {
  it('lists a flat folder by its manifest; missing, non-image and unlabelled rows are skipped and reported; unlisted images reported', async () => {
    const root = await flatFolder(['1.png', '2.png', '3.png', 'sub/4.png', 'extra.png', '_hidden.png']);
    await writeFile(path.join(root, 'notes.txt'), 'x');
    await writeFile(
      path.join(root, 'labels.csv'),
      'path,label\n1.png,zebra\n2.png,ant\nsub/4.png,zebra\n3.png,ant\ngone.png,ant\nnotes.txt,ant\n5.png,\n2.png,ant\n',
    );
    const l = await listFromLabels(root, path.join(root, 'labels.csv'));
    expect(l.classes).toEqual(['ant', 'zebra']);
    expect(l.files.map((f) => [f.relPath, f.label])).toEqual([
      ['1.png', 1],
      ['2.png', 0],
      ['3.png', 0],
      ['sub/4.png', 1],
    ]);
    expect(l.files[3].absPath).toBe(path.join(root, 'sub', '4.png'));
    expect(l.skipped).toEqual([
      { file: '5.png', reason: 'no label in labels.csv (line 8)' },
      { file: 'gone.png', reason: 'listed in labels.csv (line 6) but not found' },
      { file: 'notes.txt', reason: 'not an image type training reads (labels.csv line 7)' },
    ]);
    expect(l.unlisted).toEqual(['extra.png']);
  });

  it('refuses a path listed twice with different labels, a symlink out of the folder, and a class left without images', async () => {
    const root = await flatFolder(['1.png', '2.png']);
    await writeFile(path.join(root, 'twice.csv'), 'path,label\n1.png,a\n2.png,b\n1.png,b\n');
    await expect(listFromLabels(root, path.join(root, 'twice.csv'))).rejects.toThrow(
      /twice\.csv line 4: 1\.png is listed again with another label/,
    );

    const outside = await flatFolder(['secret.png']);
    await symlink(path.join(outside, 'secret.png'), path.join(root, 'link.png'));
    await writeFile(path.join(root, 'link.csv'), 'path,label\n1.png,a\n2.png,b\nlink.png,b\n');
    await expect(listFromLabels(root, path.join(root, 'link.csv'))).rejects.toThrow(
      /link\.csv line 4: link\.png resolves outside the data folder/,
    );

    await writeFile(path.join(root, 'lost.csv'), 'path,label\n1.png,a\n2.png,a\nnope.png,b\n');
    await expect(listFromLabels(root, path.join(root, 'lost.csv'))).rejects.toThrow(/class\(es\) with no images found: b/);
    await writeFile(path.join(root, 'one.csv'), 'path,label\n1.png,a\n2.png,a\n');
    await expect(listFromLabels(root, path.join(root, 'one.csv'))).rejects.toThrow(/need at least 2 classes in one\.csv, found 1 \(a\)/);
  });

  it('finds the manifest as given or inside the data folder', async () => {
    const root = await flatFolder(['1.png']);
    await writeFile(path.join(root, 'labels.jsonl'), '');
    expect(await resolveLabelsFile(root, 'labels.jsonl')).toBe(path.join(root, 'labels.jsonl'));
    expect(await resolveLabelsFile('/nowhere', path.join(root, 'labels.jsonl'))).toBe(path.join(root, 'labels.jsonl'));
    await expect(resolveLabelsFile(root, 'nope.csv')).rejects.toThrow(/labels file not found: .*nope\.csv or .*nope\.csv/);
  });
});

describe('the split column', () => {
  it('pre-assigned files go where they say; the rest split randomly and reproducibly', async () => {
    const names = Array.from({ length: 30 }, (_, i) => `${i}.png`);
    const root = await flatFolder(names);
    const split = (i: number) => (i < 4 ? 'test' : i < 8 ? 'validation' : i < 10 ? 'train' : '');
    const rows = names.map((n, i) => `${n},${i % 2 ? 'b' : 'a'},${split(i)}`);
    await writeFile(path.join(root, 'labels.csv'), `path,label,split\n${rows.join('\n')}\n`);
    const l = await listFromLabels(root, path.join(root, 'labels.csv'));
    const s = splitDataset(l, { validationSplit: 0.25, seed: 3 });
    const ids = (fs: { relPath: string }[]) => fs.map((f) => Number.parseInt(f.relPath, 10)).sort((x, y) => x - y);
    expect(ids(s.test)).toEqual([0, 1, 2, 3]);
    expect(ids(s.validation)).toEqual(expect.arrayContaining([4, 5, 6, 7]));
    expect(ids(s.train)).toEqual(expect.arrayContaining([8, 9]));
    // 20 free files, 25% of them random validation.
    expect(s.validation).toHaveLength(4 + 5);
    expect(s.train).toHaveLength(2 + 15);
    const all = [...s.train, ...s.validation, ...s.test].map((f) => f.relPath);
    expect(new Set(all).size).toBe(30);
    const again = splitDataset(l, { validationSplit: 0.25, seed: 3 });
    expect(again.validation.map((f) => f.relPath)).toEqual(s.validation.map((f) => f.relPath));
    const strat = splitDataset(l, { validationSplit: 0.25, seed: 3, stratified: true });
    expect(ids(strat.test)).toEqual([0, 1, 2, 3]);
  });

  it('a manifest that repeats the folder labels gives the same split as the folders (test empty)', async () => {
    const root = await makeDataset(await tmp(), { ant: 7, bee: 9 });
    const folders = await listDataset(root);
    await writeFile(
      path.join(root, 'labels.csv'),
      `path,class\n${folders.files.map((f) => `${f.relPath},${f.relPath.split('/')[0]}`).join('\n')}\n`,
    );
    const fromLabels = await listFromLabels(root, path.join(root, 'labels.csv'));
    for (const stratified of [false, true]) {
      const a = splitDataset(folders, { validationSplit: 0.3, seed: 11, stratified });
      const b = splitDataset(fromLabels, { validationSplit: 0.3, seed: 11, stratified });
      expect(b.validation.map((f) => f.relPath)).toEqual(a.validation.map((f) => f.relPath));
      expect(b.train.map((f) => f.relPath)).toEqual(a.train.map((f) => f.relPath));
      expect(a.test).toEqual([]);
      expect(b.test).toEqual([]);
    }
  });
});

describe('loadData with --labels', () => {
  it('trains on the manifest: skipped rows in the manifest, validation files listed, labels in the fingerprint, test held out', async () => {
    const names = Array.from({ length: 12 }, (_, i) => `img/${i}.png`);
    const root = await flatFolder(names);
    await writeFile(path.join(root, 'img', 'dup.png'), await makeImage('png', { width: 12, height: 12, color: [0, 0, 0] })); // = img/0.png
    const rows = names.map((n, i) => `${n},${i % 2 ? 'b' : 'a'},${i === 11 ? 'test' : ''}`);
    await writeFile(path.join(root, 'labels.csv'), `path,label,split\n${rows.join('\n')}\nimg/dup.png,b,validation\nmissing.png,a,\n`);
    const events: TrainEvent[] = [];
    const opts = resolveTrainOptions({
      data: root,
      out: path.join(root, 'out'),
      labels: 'labels.csv',
      imageSize: 32,
      validationSplit: 0.25,
    });
    const data = await loadData(opts, (e) => events.push(e), memoryCache());
    expect(data.classes).toEqual(['a', 'b']);
    expect(data.train.length + data.validation.length).toBe(12); // 11 free + dup; img/11.png is test
    const relPaths = (set: { files: readonly { relPath: string }[] }) => set.files.map((f) => f.relPath);
    expect(relPaths(data.validation)).toContain('img/dup.png');
    expect(data.validationFiles).toEqual(relPaths(data.validation));
    expect([...relPaths(data.train), ...relPaths(data.validation)]).not.toContain('img/11.png');
    expect(data.skipped).toEqual([{ file: 'missing.png', reason: 'listed in labels.csv (line 15) but not found' }]);
    expect(data.dataReport.perClass.a.test + data.dataReport.perClass.b.test).toBe(1);
    expect(data.dataReport.duplicates.crossClass).toBe(1);
    expect(data.dataReport.labels).toEqual({ file: 'labels.csv', unlisted: 0, unlistedExamples: [] });
    const warnings = events.filter((e) => e.type === 'warning').map((e) => (e as { message: string }).message);
    expect(
      warnings.some((w) =>
        /identical files carry different labels, e\.g\. img\/0\.png \(a, \w+\) = img\/dup\.png \(b, validation\)/.test(w),
      ),
    ).toBe(true);
    expect(warnings).toContain('skipped missing.png: listed in labels.csv (line 15) but not found');
    // Relabelling one image changes the fingerprint even though no file changed.
    const hashes = new Map([...relPaths(data.train), ...relPaths(data.validation)].map((p) => [p, 'h']));
    const labels = new Map([...hashes.keys()].map((k) => [k, 'a']));
    const relabelled = new Map(labels).set('img/1.png', 'b');
    expect(datasetFingerprint(data.classes, hashes, { labels })).not.toBe(datasetFingerprint(data.classes, hashes, { labels: relabelled }));
    expect(datasetFingerprint(data.classes, hashes)).not.toBe(datasetFingerprint(data.classes, hashes, { labels }));
  });

  it('without --labels the fingerprint and split are the class-folder ones', async () => {
    const root = await makeDataset(await tmp(), { a: 5, b: 5 });
    const opts = resolveTrainOptions({ data: root, out: path.join(root, 'out'), imageSize: 32 });
    const data = await loadData(opts, () => {}, memoryCache());
    const l = await listDataset(root);
    const s = splitDataset(l, { validationSplit: opts.validationSplit, seed: opts.seed });
    expect(data.validationFiles).toEqual(s.validation.map((f) => f.relPath));
    expect(data.dataReport.labels).toBeUndefined();
  });
});

describe.skipIf(!hasAlpaca)(`the alpaca photos from a manifest${hasAlpaca ? '' : ` (${skipReason('the alpaca photos')})`}`, () => {
  it('a labels.csv written from the folders gives the folder classes, the same split and the same hashes', async () => {
    const folders = await listAndSplit({ data: ALPACA_DIR, validationSplit: 0.2, seed: 42, stratified: false }, () => {});
    const dir = await tmp();
    const csv = path.join(dir, 'labels.csv');
    // Absolute manifest path, relative image paths, quoted as a spreadsheet would.
    await writeFile(
      csv,
      `"image","class"\n${folders.listing.files.map((f) => `"${f.relPath}","${f.relPath.split('/')[0]}"`).join('\n')}\n`,
    );
    const fromCsv = await listAndSplit({ data: ALPACA_DIR, labels: csv, validationSplit: 0.2, seed: 42, stratified: false }, () => {});
    expect(fromCsv.listing.classes).toEqual(['alpaca', 'not_alpaca']);
    expect(fromCsv.listing.files).toHaveLength(327);
    expect(fromCsv.split.validation.map((f) => f.relPath)).toEqual(folders.split.validation.map((f) => f.relPath));
    expect(fromCsv.skipped).toEqual([]);
    // The hashes come from the one read that decodes each file.
    const [a, b] = [await readAndReport(folders), await readAndReport(fromCsv)];
    expect(fromCsv.listing.files.map((f) => f.sha256)).toEqual(folders.listing.files.map((f) => f.sha256));
    expect(fromCsv.listing.files.every((f) => /^[0-9a-f]{64}$/.test(f.sha256 ?? ''))).toBe(true);
    expect(b.labels).toEqual({ file: 'labels.csv', unlisted: 0, unlistedExamples: [] });
    expect(a.perClass).toEqual(b.perClass);
    expect(a.smallest).toEqual({ class: 'alpaca', count: 142 });
  });
});
