import { stat } from 'node:fs/promises';
import path from 'node:path';
import { type DataReport, dataReport } from './data-report.js';
import { DatasetError, type DatasetListing, listDataset, type SkippedFile, type Split, splitDataset } from './dataset.js';
import { listFromLabels, resolveLabelsFile } from './label-manifest.js';
import type { TrainOptions } from './options.js';
import type { Reporter } from './progress.js';

/** A run's dataset before any decode: listed (class folders or a label manifest) and split; no file read yet. */
export interface ListedData {
  /** Local folder of the dataset (an s3:// dataset is synced to one first). */
  dir: string;
  listing: DatasetListing;
  split: Split;
  /** Listed rows of a label manifest that are not used (missing, not images, no label). */
  skipped: SkippedFile[];
  /** The label manifest's file name and its unlisted images, for the data report. */
  labels?: { file: string; unlisted: readonly string[] };
  /** For the fingerprint: with a label manifest the path does not fix the class or the split, so they are hashed too. */
  assigned?: { labels: Map<string, string>; splits: Map<string, string> };
}

const MAX_LINES = 20;

/**
 * Syncs an s3:// dataset, lists it and splits it. No file is read here: the bytes are hashed when
 * they are decoded, and the data report (reportDataQuality) is built from those hashes.
 */
export async function listAndSplit(
  opts: Pick<TrainOptions, 'data' | 'labels' | 'validationSplit' | 'testSplit' | 'seed' | 'stratified'>,
  report: Reporter,
  sync: { cacheDir?: string } = {},
  /** A split to use instead of the seeded one (a cross-validation fold). */
  given?: Split,
): Promise<ListedData> {
  const info = (message: string) => report({ type: 'info', message });
  let dir = opts.data;
  let labelsFile: string | undefined;
  if (opts.data.startsWith('s3://')) {
    const { labelsKey, syncDataset } = await import('./dataset-s3.js');
    const key = opts.labels ? labelsKey(opts.data, opts.labels) : undefined;
    dir = await syncDataset(opts.data, {
      log: info,
      cacheDir: sync.cacheDir,
      ...(key ? { acceptExtra: (rel) => rel === key, anyLayout: true } : {}),
    });
    if (key) {
      labelsFile = path.join(dir, key);
      if (!(await stat(labelsFile).catch(() => undefined))?.isFile()) {
        throw new DatasetError(`labels file not found: ${opts.data.replace(/\/*$/, '/')}${key} (or it was skipped by the sync, see above)`);
      }
    }
  } else if (opts.labels) {
    labelsFile = await resolveLabelsFile(dir, opts.labels);
  }

  let listing: DatasetListing;
  let skipped: SkippedFile[] = [];
  let unlisted: string[] = [];
  if (labelsFile) {
    const l = await listFromLabels(dir, labelsFile);
    ({ skipped, unlisted } = l);
    listing = { root: l.root, classes: l.classes, files: l.files };
    const pre = l.files.filter((f) => f.split).length;
    info(
      `labels ${labelsFile}: ${l.files.length} images in ${l.classes.length} classes${pre ? `, ${pre} with a pre-assigned split` : ''}, ${skipped.length} listed but not used, ${unlisted.length} unlisted images ignored`,
    );
    for (const s of skipped.slice(0, MAX_LINES)) report({ type: 'warning', message: `skipped ${s.file}: ${s.reason}` });
    if (skipped.length > MAX_LINES)
      report({ type: 'warning', message: `... and ${skipped.length - MAX_LINES} more listed files not used` });
  } else {
    listing = await listDataset(dir);
  }

  const split =
    given ??
    splitDataset(listing, {
      validationSplit: opts.validationSplit,
      testSplit: opts.testSplit,
      seed: opts.seed,
      stratified: opts.stratified,
    });
  const assigned = labelsFile
    ? {
        labels: new Map(listing.files.map((f) => [f.relPath, listing.classes[f.label]])),
        splits: new Map(listing.files.filter((f) => f.split).map((f) => [f.relPath, f.split as string])),
      }
    : undefined;
  return { dir, listing, split, skipped, labels: labelsFile ? { file: path.basename(labelsFile), unlisted } : undefined, assigned };
}

/**
 * Class balance and exact duplicates of the listed files, from the sha256 each file got when it
 * was read (decodeStream sets `file.sha256`), with the info line and the warnings.
 */
export function reportDataQuality(listed: ListedData, report: Reporter): DataReport {
  const { listing, split } = listed;
  const quality = dataReport(listing.classes, split, listed.labels ? { labels: listed.labels } : {});
  const { duplicates: d, smallest, largest } = quality;
  report({
    type: 'info',
    message:
      `class balance: smallest ${smallest.class} (${smallest.count}), largest ${largest.class} (${largest.count}); ` +
      `${d.groups} set(s) of identical files (${d.crossClass} across classes, ${d.crossSplit} across the split)` +
      (split.test.length ? `; ${split.test.length} test images held out` : ''),
  });
  for (const w of quality.warnings) report({ type: 'warning', message: w });
  return quality;
}
