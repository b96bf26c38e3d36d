import type { DataReport } from '../core/manifest.js';
import type { DatasetFile, Split } from './dataset.js';

/**
 * Class balance and exact duplicates (by the sha256 of the file bytes, set as decodeStream reads
 * each file once) of the listed files: the same photo under two labels, or on both sides of the
 * split (which leaks validation into training). Near-duplicates are not looked for.
 */

export type { DataReport };

export interface DataReportOptions {
  /** Warn when the largest class has at least this many times the images of the smallest. Default 3. */
  imbalanceWarnAt?: number;
  /** Warn about a class with fewer images than this. Default 10. */
  smallClassWarnAt?: number;
  /** Duplicate sets kept as examples, and files per set. Default 20 and 5. */
  maxExamples?: number;
  maxFilesPerExample?: number;
  labels?: { file: string; unlisted: readonly string[] };
}

type Side = 'train' | 'validation' | 'test';
const SIDES: Side[] = ['train', 'validation', 'test'];

export function dataReport(classes: readonly string[], split: Split, opts: DataReportOptions = {}): DataReport {
  const { imbalanceWarnAt = 3, smallClassWarnAt = 10, maxExamples = 20, maxFilesPerExample = 5 } = opts;
  const perClass: DataReport['perClass'] = Object.fromEntries(classes.map((c) => [c, { train: 0, validation: 0, test: 0 }]));
  // Only hex strings and references to the listing's own file objects are held.
  const byHash = new Map<string, { file: DatasetFile; side: Side }[]>();
  let unhashed = 0;
  for (const side of SIDES) {
    for (const file of split[side]) {
      perClass[classes[file.label]][side]++;
      if (!file.sha256) {
        unhashed++;
        continue;
      }
      const group = byHash.get(file.sha256);
      if (group) group.push({ file, side });
      else byHash.set(file.sha256, [{ file, side }]);
    }
  }

  const totals = classes.map((c) => ({ class: c, count: SIDES.reduce((n, s) => n + perClass[c][s], 0) }));
  const smallest = totals.reduce((a, b) => (b.count < a.count ? b : a));
  const largest = totals.reduce((a, b) => (b.count > a.count ? b : a));
  // Finite even for an empty class, so the manifest stays valid JSON.
  const imbalance = largest.count / Math.max(1, smallest.count);

  let groups = 0;
  let dupFiles = 0;
  let crossClass = 0;
  let crossSplit = 0;
  const examples: (DataReport['duplicates']['examples'][number] & { rank: number })[] = [];
  for (const [sha256, members] of byHash) {
    if (members.length < 2) continue;
    groups++;
    dupFiles += members.length;
    const xClass = new Set(members.map((m) => m.file.label)).size > 1;
    // Leaks: the same bytes in training and in validation/test, or in validation and test.
    const xSplit = new Set(members.map((m) => m.side)).size > 1;
    if (xClass) crossClass++;
    if (xSplit) crossSplit++;
    const rank = (xClass ? 2 : 0) + (xSplit ? 1 : 0);
    examples.push({
      sha256,
      count: members.length,
      rank,
      files: members.slice(0, maxFilesPerExample).map((m) => ({ file: m.file.relPath, class: classes[m.file.label], split: m.side })),
    });
  }
  examples.sort((a, b) => b.rank - a.rank || (a.files[0].file < b.files[0].file ? -1 : 1));

  const warnings: string[] = [];
  if (classes.length && imbalance >= imbalanceWarnAt) {
    warnings.push(
      `class imbalance: the largest class ${largest.class} has ${largest.count} images, ${imbalance.toFixed(1)}x the smallest ${smallest.class} (${smallest.count})`,
    );
  }
  const small = totals.filter((t) => t.count < smallClassWarnAt);
  if (small.length)
    warnings.push(
      `few images: ${small.map((t) => `${t.class} (${t.count})`).join(', ')}; ${smallClassWarnAt} or more per class is advised`,
    );
  const noVal = classes.filter((c) => split.validation.length > 0 && perClass[c].validation === 0);
  if (noVal.length) warnings.push(`no validation images for class(es) ${noVal.join(', ')}: their validation metrics are undefined`);
  const show = (e: (typeof examples)[number]) => e.files.map((f) => `${f.file} (${f.class}, ${f.split})`).join(' = ');
  if (crossClass) {
    const e = examples.find((x) => x.rank >= 2);
    warnings.push(`${crossClass} set(s) of identical files carry different labels, e.g. ${e ? show(e) : ''}`);
  }
  if (crossSplit) {
    const e = examples.find((x) => x.rank % 2 === 1);
    warnings.push(
      `${crossSplit} set(s) of identical files are on more than one side of the split (a leak between training, validation and test), e.g. ${e ? show(e) : ''}`,
    );
  }
  if (unhashed) warnings.push(`${unhashed} file(s) could not be read to check for duplicates`);
  if (opts.labels?.unlisted.length) {
    const u = opts.labels.unlisted;
    warnings.push(
      `${u.length} image(s) in the data folder are not listed in ${opts.labels.file} and are not used, e.g. ${u.slice(0, 3).join(', ')}`,
    );
  }

  return {
    perClass,
    smallest,
    largest,
    imbalance,
    duplicates: { groups, files: dupFiles, crossClass, crossSplit, examples: examples.slice(0, maxExamples).map(({ rank: _, ...e }) => e) },
    unhashed,
    ...(opts.labels
      ? { labels: { file: opts.labels.file, unlisted: opts.labels.unlisted.length, unlistedExamples: opts.labels.unlisted.slice(0, 20) } }
      : {}),
    warnings,
  };
}
