import path from 'node:path';
import { type DecodedImage, datasetFingerprint, decodeFiles, listDataset, type SkippedFile, type Split, splitDataset } from './dataset.js';
import type { TrainOptions } from './options.js';
import type { Reporter } from './progress.js';

/** The decoded dataset of one run, split into training and validation images. */
export interface TrainData {
  /** Local folder of the dataset (an s3:// dataset is synced to one first). */
  dir: string;
  /** The model's name: --name, else the dataset folder's name. */
  name: string;
  classes: string[];
  train: DecodedImage[];
  validation: DecodedImage[];
  /** The untouched test split (--test-split); empty without one. */
  test: DecodedImage[];
  trainLabels: Int32Array;
  validationLabels: Int32Array;
  testLabels: Int32Array;
  /** Images per class over both sides of the split. */
  perClass: Record<string, number>;
  skipped: SkippedFile[];
  /** Fingerprint of the classes and decoded image contents (part of the checkpoint's run key). */
  fingerprint: string;
  decodeSeconds: number;
}

const labelsOf = (images: readonly DecodedImage[]) => Int32Array.from(images.map((i) => i.file.label));

/** Lists (syncing an s3:// dataset first), splits and decodes the dataset. */
export async function loadData(opts: TrainOptions, report: Reporter, given?: Split): Promise<TrainData> {
  const t = performance.now();
  const dir = opts.data.startsWith('s3://')
    ? await (await import('./dataset-s3.js')).syncDataset(opts.data, { log: (m: string) => report({ type: 'info', message: m }) })
    : opts.data;
  const listing = await listDataset(dir);
  const split =
    given ??
    splitDataset(listing, {
      validationSplit: opts.validationSplit,
      testSplit: opts.testSplit,
      seed: opts.seed,
      stratified: opts.stratified,
    });
  report({ type: 'stage', stage: `decoding ${listing.files.length} images`, total: listing.files.length });
  const decoded = await decodeFiles([...split.train, ...split.validation, ...split.test], {
    size: opts.imageSize,
    resize: opts.resize,
    onProgress: (done, total) => report({ type: 'progress', stage: 'decode', done, total }),
  });
  for (const s of decoded.skipped) report({ type: 'warning', message: `skipped ${s.file}: ${s.reason}` });
  const valSet = new Set(split.validation.map((f) => f.relPath));
  const testSet = new Set(split.test.map((f) => f.relPath));
  const train = decoded.images.filter((i) => !valSet.has(i.file.relPath) && !testSet.has(i.file.relPath));
  const validation = decoded.images.filter((i) => valSet.has(i.file.relPath));
  const test = decoded.images.filter((i) => testSet.has(i.file.relPath));
  if (!train.length || !validation.length) throw new Error('no decodable images left on one side of the split');
  if (split.test.length && !test.length) throw new Error('no decodable images left in the test split');
  const classes = listing.classes;
  report({
    type: 'info',
    message: `dataset: ${classes.length} classes (${classes.join(', ')}), ${train.length} training and ${validation.length} validation images${test.length ? `, ${test.length} test images (untouched)` : ''}, ${decoded.skipped.length} skipped`,
  });
  return {
    dir,
    name: opts.name ?? path.basename(path.resolve(dir.replace(/\/+$/, ''))),
    classes,
    train,
    validation,
    test,
    trainLabels: labelsOf(train),
    validationLabels: labelsOf(validation),
    testLabels: labelsOf(test),
    perClass: Object.fromEntries(classes.map((c, i) => [c, decoded.images.filter((d) => d.file.label === i).length])),
    skipped: decoded.skipped,
    fingerprint: datasetFingerprint(classes, decoded.hashes),
    decodeSeconds: (performance.now() - t) / 1000,
  };
}
