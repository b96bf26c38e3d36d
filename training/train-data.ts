import path from 'node:path';
import type { DataReport } from '../core/manifest.js';
import { formatMiB, type RunCache } from './cache-budget.js';
import { datasetFingerprint, decodeStream, type SkippedFile, type Split } from './dataset.js';
import { listAndSplit, reportDataQuality } from './dataset-listing.js';
import { type ImageSet, ImageSetBuilder } from './image-set.js';
import type { TrainOptions } from './options.js';
import type { Reporter } from './progress.js';

/** The decoded dataset of one run, split into training and validation images. */
export interface TrainData {
  /** Local folder of the dataset (an s3:// dataset is synced to one first). */
  dir: string;
  /** The model's name: --name, else the dataset folder's name. */
  name: string;
  classes: string[];
  /** Decoded once; in memory or in the run's spill folder (see cache-budget.ts). */
  train: ImageSet;
  validation: ImageSet;
  /** The untouched test split (--test-split, or a label manifest's `test` rows); empty without one. */
  test: ImageSet;
  trainLabels: Int32Array;
  validationLabels: Int32Array;
  testLabels: Int32Array;
  /** Images per class over both sides of the split. */
  perClass: Record<string, number>;
  skipped: SkippedFile[];
  /** Fingerprint of the classes and decoded image contents (part of the checkpoint's run key). */
  fingerprint: string;
  decodeSeconds: number;
  /** The validation images used (relative paths, in `validation` order), for the manifest. */
  validationFiles: string[];
  /** Class balance and duplicates, from the hashes taken as the files were read for decoding. */
  dataReport: DataReport;
}

/**
 * Lists (syncing an s3:// dataset first), splits (or takes `given`, e.g. a cross-validation fold)
 * and decodes the dataset in one bounded pass: each file is read once, hashed (the fingerprint and
 * the data report's duplicates) and decoded, and the image appended to its side's image set,
 * never all held at once unless the cache budget has room for them.
 */
export async function loadData(opts: TrainOptions, report: Reporter, cache: RunCache, given?: Split): Promise<TrainData> {
  const t = performance.now();
  const listed = await listAndSplit(opts, report, {}, given);
  const { dir, listing, split, skipped: unused, assigned } = listed;
  const files = [...split.train, ...split.validation, ...split.test];
  report({ type: 'stage', stage: `decoding ${files.length} images`, total: files.length });
  const trainB = new ImageSetBuilder(cache, 'train-images', opts.imageSize, split.train.length);
  const valB = new ImageSetBuilder(cache, 'validation-images', opts.imageSize, split.validation.length);
  const testB = new ImageSetBuilder(cache, 'test-images', opts.imageSize, split.test.length);
  const nTrain = split.train.length;
  const nTrainVal = nTrain + split.validation.length;
  const skipped: SkippedFile[] = [];
  const hashes = new Map<string, string>();
  const perLabel = new Array<number>(listing.classes.length).fill(0);
  try {
    for await (const r of decodeStream(files, {
      size: opts.imageSize,
      resize: opts.resize,
      onProgress: (done, total) => report({ type: 'progress', stage: 'decode', done, total }),
    })) {
      if (r.hash) hashes.set(r.file.relPath, r.hash);
      if (!r.image) {
        skipped.push({ file: r.file.relPath, reason: r.error ?? 'not decodable' });
        continue;
      }
      perLabel[r.file.label]++;
      (r.index < nTrain ? trainB : r.index < nTrainVal ? valB : testB).append(r.image);
    }
  } catch (e) {
    for (const b of [trainB, valB, testB]) b.finish().dispose();
    throw e;
  }
  const dataReport = reportDataQuality(listed, report);
  skipped.sort((a, b) => (a.file < b.file ? -1 : 1));
  for (const s of skipped) report({ type: 'warning', message: `skipped ${s.file}: ${s.reason}` });
  const train = trainB.finish();
  const validation = valB.finish();
  const test = testB.finish();
  const fail = (message: string) => {
    for (const set of [train, validation, test]) set.dispose();
    return new Error(message);
  };
  if (!train.length || !validation.length) throw fail('no decodable images left on one side of the split');
  if (split.test.length && !test.length) throw fail('no decodable images left in the test split');
  const classes = listing.classes;
  report({
    type: 'info',
    message: `dataset: ${classes.length} classes (${classes.join(', ')}), ${train.length} training and ${validation.length} validation images${test.length ? `, ${test.length} test images (untouched)` : ''}, ${skipped.length} skipped`,
  });
  if (train.onDisk || validation.onDisk) {
    report({
      type: 'info',
      message: `decoded images cached on disk (${formatMiB(cache.spill.bytes)} in ${cache.spill.folder}): more than the ${formatMiB(cache.budget.total)} cache budget`,
    });
  }
  return {
    dir,
    name: opts.name ?? path.basename(path.resolve(dir.replace(/\/+$/, ''))),
    classes,
    train,
    validation,
    test,
    trainLabels: train.labels,
    validationLabels: validation.labels,
    testLabels: test.labels,
    perClass: Object.fromEntries(classes.map((c, i) => [c, perLabel[i]])),
    skipped: [...unused, ...skipped],
    fingerprint: datasetFingerprint(classes, hashes, assigned),
    decodeSeconds: (performance.now() - t) / 1000,
    validationFiles: validation.files.map((f) => f.relPath),
    dataReport,
  };
}
