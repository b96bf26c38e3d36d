import { readFile, realpath, stat } from 'node:fs/promises';
import path from 'node:path';
import { CsvError, parse } from 'csv-parse/sync';
import { IMAGE_EXTENSIONS } from '../core/image.js';
import { DatasetError, type DatasetFile, type DatasetListing, type SkippedFile, walkImages } from './dataset.js';

/**
 * Labels from a manifest instead of class folders: a CSV/TSV with a header row, or JSON Lines.
 * One label per image; paths relative to the data folder and never outside it.
 */

export type LabelSplit = NonNullable<DatasetFile['split']>;

export interface LabelRow {
  /** Where in the manifest: `line N` (CSV: the line the record ends on). */
  where: string;
  path: string;
  label: string;
  split?: LabelSplit;
}

export interface LabelListing extends DatasetListing {
  /** The manifest file read. */
  labelsFile: string;
  /** Listed rows not used, with the reason: missing file, not an image type, no label. Never fatal. */
  skipped: SkippedFile[];
  /** Images in the data folder that the manifest does not list (relative paths, sorted). */
  unlisted: string[];
}

/** Largest manifest read (it is parsed in memory): a 1,000,000-row CSV is ~60 MB. */
export const MAX_LABELS_BYTES = 64 * 1024 * 1024;
const MAX_LABEL_CHARS = 200;

const PATH_COLUMNS = ['path', 'file', 'filename', 'image'];
const LABEL_COLUMNS = ['label', 'class'];
/** Headers that look like one more label (label_2, labels, classes, tags): refused as multi-label. */
const LABELISH = /^(labels?|class(es)?|tags?|categor(y|ies))([ _-]?\d+)?$/i;
/** Separators of several labels in one field. */
const MULTI = /[;|,]/;

export class LabelManifestError extends DatasetError {
  constructor(message: string) {
    super(message);
    this.name = 'LabelManifestError';
  }
}

const SPLITS: Record<string, LabelSplit> = {
  train: 'train',
  training: 'train',
  validation: 'validation',
  val: 'validation',
  valid: 'validation',
  test: 'test',
};

function parseSplit(v: string, where: string, source: string): LabelSplit | undefined {
  const s = v.trim().toLowerCase();
  if (!s) return undefined;
  const split = SPLITS[s];
  if (!split) throw new LabelManifestError(`${source} ${where}: split ${JSON.stringify(v)} is not train, validation or test`);
  return split;
}

function checkLabel(raw: string, where: string, source: string): string {
  const label = raw.trim();
  // biome-ignore lint/suspicious/noControlCharactersInRegex: control characters are what is refused here
  if (/[\u0000-\u001f\u007f]/.test(label)) throw new LabelManifestError(`${source} ${where}: the label has control characters`);
  if (label.length > MAX_LABEL_CHARS)
    throw new LabelManifestError(`${source} ${where}: the label is longer than ${MAX_LABEL_CHARS} characters`);
  if (MULTI.test(label)) {
    throw new LabelManifestError(
      `${source} ${where}: several labels for one image (${JSON.stringify(label)}); multi-label rows are not supported, give each image one label`,
    );
  }
  return label;
}

/**
 * A manifest path as a safe relative path with forward slashes, or an error: absolute paths,
 * drive letters, backslashes, `..`, empty segments and control characters are refused (a hostile
 * manifest must not read outside the data folder).
 */
export function safeRelPath(raw: string, where: string, source: string): string {
  const p = raw.trim().replace(/^(\.\/)+/, '');
  const bad = (why: string) => new LabelManifestError(`${source} ${where}: path ${JSON.stringify(raw)} ${why}`);
  if (!p) throw bad('is empty');
  // biome-ignore lint/suspicious/noControlCharactersInRegex: control characters are what is refused here
  if (/[\u0000-\u001f\u007f]/.test(p)) throw bad('has control characters');
  if (p.includes('\\')) throw bad('has a backslash (use forward slashes, relative to the data folder)');
  if (path.posix.isAbsolute(p) || /^[a-zA-Z]:/.test(p)) throw bad('is absolute (paths must be relative to the data folder)');
  const segments = p.split('/');
  if (segments.includes('..')) throw bad('leaves the data folder (..)');
  if (segments.some((s) => s === '' || s === '.')) throw bad('has empty segments');
  return p;
}

function pickColumn(header: string[], names: string[]): number {
  return header.findIndex((h) => names.includes(h.trim().toLowerCase()));
}

/** CSV (or TSV) with a header row; quoted fields per RFC 4180 (csv-parse). */
export function parseCsvLabels(text: string, source: string, delimiter = ','): LabelRow[] {
  let records: { record: string[]; info: { lines: number } }[];
  try {
    records = parse(text, {
      bom: true,
      delimiter,
      info: true,
      skip_empty_lines: true,
      relax_column_count: false,
    }) as unknown as typeof records;
  } catch (e) {
    if (e instanceof CsvError) {
      const line = (e as CsvError & { lines?: number }).lines;
      const where = line ? `line ${line}` : 'parse';
      if (e.code === 'CSV_RECORD_INCONSISTENT_FIELDS_LENGTH') {
        throw new LabelManifestError(
          `${source} ${where}: the row has a different number of fields than the header (several labels for one image are not supported)`,
        );
      }
      throw new LabelManifestError(`${source} ${where}: ${e.message}`);
    }
    throw e;
  }
  if (!records.length) throw new LabelManifestError(`${source}: empty (expected a header row, e.g. path,label)`);
  const header = records[0].record.map((h) => h.trim());
  const pathCol = pickColumn(header, PATH_COLUMNS);
  const labelCols = header.map((h, i) => [h, i] as const).filter(([h]) => LABELISH.test(h));
  const splitCol = pickColumn(header, ['split']);
  if (pathCol < 0)
    throw new LabelManifestError(`${source} line 1 (header): no path column (${PATH_COLUMNS.join(', ')}) in ${header.join(', ')}`);
  if (labelCols.length > 1) {
    throw new LabelManifestError(
      `${source} line 1 (header): several label columns (${labelCols.map(([h]) => h).join(', ')}); multi-label data is not supported, keep one label or class column`,
    );
  }
  const labelCol = pickColumn(header, LABEL_COLUMNS);
  if (labelCol < 0) {
    throw new LabelManifestError(
      `${source} line 1 (header): no label column (${LABEL_COLUMNS.join(', ')}) in ${header.join(', ')}${labelCols.length ? ' (one label per image: name the column label or class)' : ''}`,
    );
  }
  return records.slice(1).map(({ record, info }) => {
    const where = `line ${info.lines}`;
    return {
      where,
      path: safeRelPath(record[pathCol], where, source),
      label: checkLabel(record[labelCol], where, source),
      split: splitCol >= 0 ? parseSplit(record[splitCol], where, source) : undefined,
    };
  });
}

/** JSON Lines: one object per line, e.g. {"image": "a/1.jpg", "label": "cat", "split": "test"}. */
export function parseJsonlLabels(text: string, source: string): LabelRow[] {
  const rows: LabelRow[] = [];
  const lines = text.replace(/^\uFEFF/, '').split(/\r?\n/);
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i].trim();
    if (!line) continue;
    const where = `line ${i + 1}`;
    let obj: unknown;
    try {
      obj = JSON.parse(line);
    } catch (e) {
      throw new LabelManifestError(`${source} ${where}: not valid JSON (${(e as Error).message})`);
    }
    if (!obj || typeof obj !== 'object' || Array.isArray(obj)) throw new LabelManifestError(`${source} ${where}: expected a JSON object`);
    const o = obj as Record<string, unknown>;
    const pathKey = PATH_COLUMNS.find((k) => k in o);
    if (!pathKey || typeof o[pathKey] !== 'string') {
      throw new LabelManifestError(`${source} ${where}: no string path field (${PATH_COLUMNS.join(', ')})`);
    }
    const labelKeys = Object.keys(o).filter((k) => LABELISH.test(k));
    if (labelKeys.length > 1) {
      throw new LabelManifestError(
        `${source} ${where}: several label fields (${labelKeys.join(', ')}); multi-label rows are not supported`,
      );
    }
    let label = labelKeys.length && LABEL_COLUMNS.includes(labelKeys[0]) ? o[labelKeys[0]] : undefined;
    if (Array.isArray(label)) {
      if (label.length > 1)
        throw new LabelManifestError(`${source} ${where}: several labels for one image; multi-label rows are not supported`);
      label = label[0];
    }
    if (label === undefined || label === null) label = '';
    if (typeof label === 'number' && Number.isFinite(label)) label = String(label);
    if (typeof label !== 'string') throw new LabelManifestError(`${source} ${where}: the label must be a string (field label or class)`);
    const split = o.split;
    if (split !== undefined && split !== null && typeof split !== 'string')
      throw new LabelManifestError(`${source} ${where}: split must be a string`);
    rows.push({
      where,
      path: safeRelPath(o[pathKey] as string, where, source),
      label: checkLabel(label, where, source),
      split: typeof split === 'string' ? parseSplit(split, where, source) : undefined,
    });
  }
  return rows;
}

/** Parses a manifest by its extension: .csv, .tsv, .jsonl / .ndjson. */
export function parseLabels(text: string, file: string): LabelRow[] {
  const source = path.basename(file);
  const ext = path.extname(file).toLowerCase();
  if (ext === '.csv') return parseCsvLabels(text, source);
  if (ext === '.tsv') return parseCsvLabels(text, source, '\t');
  if (ext === '.jsonl' || ext === '.ndjson') return parseJsonlLabels(text, source);
  throw new LabelManifestError(`${source}: unknown label manifest type ${ext || '(no extension)'}: use .csv, .tsv or .jsonl`);
}

/**
 * Where the manifest is: as given (absolute, or relative to the working directory) if it exists,
 * else relative to the data folder.
 */
export async function resolveLabelsFile(root: string, labels: string): Promise<string> {
  const tried = [path.resolve(labels)];
  if (!path.isAbsolute(labels)) tried.push(path.resolve(root, labels));
  for (const p of tried) if ((await stat(p).catch(() => undefined))?.isFile()) return p;
  throw new DatasetError(`labels file not found: ${[...new Set(tried)].join(' or ')}`);
}

const isImagePath = (p: string) => (IMAGE_EXTENSIONS as readonly string[]).includes(path.posix.extname(p).toLowerCase());

/**
 * Lists a dataset from a label manifest: classes are the sorted distinct labels; listed files that
 * are missing, are not images or have no label are skipped and reported; images in the folder that
 * are not listed are reported; a listed path that resolves outside the folder (e.g. a symlink) is
 * refused.
 */
export async function listFromLabels(root: string, labelsFile: string): Promise<LabelListing> {
  const abs = path.resolve(root);
  const st = await stat(abs).catch(() => undefined);
  if (!st?.isDirectory()) throw new DatasetError(`dataset folder not found: ${abs}`);
  const realRoot = await realpath(abs);
  const file = path.resolve(labelsFile);
  const size = (await stat(file).catch(() => undefined))?.size;
  if (size === undefined) throw new DatasetError(`labels file not found: ${file}`);
  if (size > MAX_LABELS_BYTES)
    throw new LabelManifestError(`${path.basename(file)}: ${size} bytes, more than the ${MAX_LABELS_BYTES} read`);
  const source = path.basename(file);
  const rows = parseLabels(await readFile(file, 'utf8'), file);

  const skipped: SkippedFile[] = [];
  const byPath = new Map<string, LabelRow>();
  for (const r of rows) {
    const seen = byPath.get(r.path);
    if (seen) {
      if (seen.label !== r.label) {
        throw new LabelManifestError(
          `${source} ${r.where}: ${r.path} is listed again with another label (${JSON.stringify(seen.label)} at ${seen.where}, ${JSON.stringify(r.label)} here); multi-label data is not supported`,
        );
      }
      if (seen.split !== r.split)
        throw new LabelManifestError(`${source} ${r.where}: ${r.path} is listed again with another split (first at ${seen.where})`);
      continue;
    }
    byPath.set(r.path, r);
  }

  const usable: LabelRow[] = [];
  for (const r of byPath.values()) {
    if (!r.label) skipped.push({ file: r.path, reason: `no label in ${source} (${r.where})` });
    else if (!isImagePath(r.path)) skipped.push({ file: r.path, reason: `not an image type training reads (${source} ${r.where})` });
    else usable.push(r);
  }
  const present: LabelRow[] = [];
  await Promise.all(
    usable.map(async (r) => {
      const p = path.join(abs, r.path);
      const real = await realpath(p).catch(() => undefined);
      if (!real || !(await stat(real).catch(() => undefined))?.isFile()) {
        skipped.push({ file: r.path, reason: `listed in ${source} (${r.where}) but not found` });
        return;
      }
      if (real !== realRoot && !real.startsWith(realRoot + path.sep)) {
        throw new LabelManifestError(`${source} ${r.where}: ${r.path} resolves outside the data folder (${real})`);
      }
      present.push(r);
    }),
  );
  present.sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0));
  skipped.sort((a, b) => (a.file < b.file ? -1 : a.file > b.file ? 1 : 0));

  const classes = [...new Set(rows.map((r) => r.label).filter(Boolean))].sort();
  if (classes.length < 2) {
    throw new DatasetError(
      `need at least 2 classes in ${source}, found ${classes.length}${classes.length ? ` (${classes.join(', ')})` : ''}`,
    );
  }
  const index = new Map(classes.map((c, i) => [c, i]));
  const files: DatasetFile[] = present.map((r) => ({
    relPath: r.path,
    absPath: path.join(abs, r.path),
    label: index.get(r.label) as number,
    ...(r.split ? { split: r.split } : {}),
  }));
  const empty = classes.filter((_, i) => !files.some((f) => f.label === i));
  if (empty.length)
    throw new DatasetError(`class(es) with no images found: ${empty.join(', ')} (every listed file is missing or unusable; see ${source})`);

  const listed = new Set(byPath.keys());
  const unlisted = (await walkImages(abs)).map((f) => path.relative(abs, f).split(path.sep).join('/')).filter((rel) => !listed.has(rel));
  return { root: abs, classes, files, labelsFile: file, skipped, unlisted };
}
