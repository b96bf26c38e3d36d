import path from 'node:path';
import type { DataReport } from '../core/manifest.js';
import { type DecodedImage, datasetFingerprint, decodeFiles, type SkippedFile } from './dataset.js';
import { listAndSplit } from './dataset-listing.js';
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
  trainLabels: Int32Array;
  validationLabels: Int32Array;
  /** Images per class over both sides of the split. */
  perClass: Record<string, number>;
  skipped: SkippedFile[];
  /** Fingerprint of the classes and decoded image contents (part of the checkpoint's run key). */
  fingerprint: string;
  decodeSeconds: number;
  /** The validation images used (relative paths, in `validation` order), for the manifest. */
  validationFiles: string[];
  /** Class balance and duplicates, before decoding. */
  dataReport: DataReport;
}

const labelsOf = (images: readonly DecodedImage[]) => Int32Array.from(images.map((i) => i.file.label));

/** Lists (syncing an s3:// dataset first), splits and decodes the dataset. */
export async function loadData(opts: TrainOptions, report: Reporter): Promise<TrainData> {
  const t = performance.now();
  const { dir, listing, split, skipped: unused, report: dataReport, assigned } = await listAndSplit(opts, report);
  report({ type: 'stage', stage: `decoding ${listing.files.length} images`, total: listing.files.length });
  const decoded = await decodeFiles([...split.train, ...split.validation], {
    size: opts.imageSize,
    resize: opts.resize,
    onProgress: (done, total) => report({ type: 'progress', stage: 'decode', done, total }),
  });
  for (const s of decoded.skipped) report({ type: 'warning', message: `skipped ${s.file}: ${s.reason}` });
  const valSet = new Set(split.validation.map((f) => f.relPath));
  const train = decoded.images.filter((i) => !valSet.has(i.file.relPath));
  const validation = decoded.images.filter((i) => valSet.has(i.file.relPath));
  if (!train.length || !validation.length) throw new Error('no decodable images left on one side of the split');
  const classes = listing.classes;
  report({
    type: 'info',
    message: `dataset: ${classes.length} classes (${classes.join(', ')}), ${train.length} training and ${validation.length} validation images, ${decoded.skipped.length} skipped`,
  });
  return {
    dir,
    name: opts.name ?? path.basename(path.resolve(dir.replace(/\/+$/, ''))),
    classes,
    train,
    validation,
    trainLabels: labelsOf(train),
    validationLabels: labelsOf(validation),
    perClass: Object.fromEntries(classes.map((c, i) => [c, decoded.images.filter((d) => d.file.label === i).length])),
    skipped: [...unused, ...decoded.skipped],
    fingerprint: datasetFingerprint(classes, decoded.hashes, assigned),
    decodeSeconds: (performance.now() - t) / 1000,
    validationFiles: validation.map((i) => i.file.relPath),
    dataReport,
  };
}
