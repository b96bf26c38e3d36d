import { createHash } from 'node:crypto';
import { readdir, readFile, stat } from 'node:fs/promises';
import path from 'node:path';
import { decodeImage, IMAGE_EXTENSIONS, type ResizeMode, type RgbImage } from '../core/image.js';
import { createRng, shuffleInPlace } from './rng.js';

export class DatasetError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'DatasetError';
  }
}

export interface DatasetFile {
  /** Path relative to the dataset root, with forward slashes. */
  relPath: string;
  absPath: string;
  label: number;
}

export interface DatasetListing {
  root: string;
  classes: string[];
  files: DatasetFile[];
}

export interface SplitOptions {
  validationSplit: number;
  /** Share held out as an untouched test split, cut from what would otherwise train (the validation split is unchanged). */
  testSplit?: number;
  seed: number;
  /** Split each class separately so both sides keep the class proportions. */
  stratified?: boolean;
}

export interface Split {
  train: DatasetFile[];
  validation: DatasetFile[];
  /** The untouched test split (--test-split); empty without one. */
  test: DatasetFile[];
}

const isImage = (name: string) => IMAGE_EXTENSIONS.includes(path.extname(name).toLowerCase() as (typeof IMAGE_EXTENSIONS)[number]);
const isHidden = (name: string) => name.startsWith('.') || name.startsWith('_');

async function walk(dir: string): Promise<string[]> {
  const out: string[] = [];
  const entries = await readdir(dir, { withFileTypes: true });
  entries.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  for (const e of entries) {
    if (isHidden(e.name)) continue;
    const p = path.join(dir, e.name);
    if (e.isDirectory()) out.push(...(await walk(p)));
    else if (e.isFile() && isImage(e.name)) out.push(p);
  }
  return out;
}

/**
 * Keras' image_dataset_from_directory layout: one subfolder per class, class names are the sorted
 * subfolder names, images found recursively; other files (.DS_Store, README.md) are ignored.
 */
export async function listDataset(root: string): Promise<DatasetListing> {
  const abs = path.resolve(root);
  const st = await stat(abs).catch(() => undefined);
  if (!st) throw new DatasetError(`dataset folder not found: ${abs}`);
  if (!st.isDirectory()) throw new DatasetError(`dataset path is not a folder: ${abs}`);
  const classes = (await readdir(abs, { withFileTypes: true }))
    .filter((e) => e.isDirectory() && !isHidden(e.name))
    .map((e) => e.name)
    .sort();
  if (classes.length < 2) {
    throw new DatasetError(
      `need at least 2 class subfolders in ${abs}, found ${classes.length}${classes.length ? ` (${classes.join(', ')})` : ''}`,
    );
  }
  const files: DatasetFile[] = [];
  const empty: string[] = [];
  for (const [label, name] of classes.entries()) {
    const found = await walk(path.join(abs, name));
    if (!found.length) empty.push(name);
    for (const f of found) files.push({ relPath: path.relative(abs, f).split(path.sep).join('/'), absPath: f, label });
  }
  if (empty.length) throw new DatasetError(`class folder(s) with no images: ${empty.join(', ')} (in ${abs})`);
  return { root: abs, classes, files };
}

/**
 * Seeded, reproducible, non-overlapping split. Like Keras: shuffle the file list with the seed,
 * the last `validationSplit` share is validation. Stratified: the same per class.
 */
export function splitDataset(listing: DatasetListing, opts: SplitOptions): Split {
  const { validationSplit, testSplit = 0, seed, stratified = false } = opts;
  if (!(validationSplit >= 0 && validationSplit < 1)) throw new DatasetError(`validation split must be in [0, 1); got ${validationSplit}`);
  if (!(testSplit >= 0 && validationSplit + testSplit < 1)) {
    throw new DatasetError(`test split must be >= 0 and leave images to train on beside the validation split; got ${testSplit}`);
  }
  const rng = createRng(seed);
  // The same shuffle with or without a test split: validation is the last share, test the share before it.
  const cut = (files: DatasetFile[]): Split => {
    const shuffled = shuffleInPlace([...files], rng);
    const nVal = Math.floor(shuffled.length * validationSplit);
    const nTest = Math.floor(shuffled.length * testSplit);
    const end = shuffled.length - nVal;
    return { train: shuffled.slice(0, end - nTest), validation: shuffled.slice(end), test: shuffled.slice(end - nTest, end) };
  };
  let split: Split;
  if (stratified) {
    split = { train: [], validation: [], test: [] };
    for (let c = 0; c < listing.classes.length; c++) {
      const part = cut(listing.files.filter((f) => f.label === c));
      split.train.push(...part.train);
      split.validation.push(...part.validation);
      split.test.push(...part.test);
    }
  } else {
    split = cut(listing.files);
  }
  if (testSplit > 0 && split.test.length === 0) {
    throw new DatasetError(`too few images (${listing.files.length}) for a ${Math.round(testSplit * 100)}% test split`);
  }
  const minVal = validationSplit > 0 ? 1 : 0;
  if (split.train.length < listing.classes.length || split.validation.length < minVal) {
    throw new DatasetError(
      `too few images (${listing.files.length}) for a ${Math.round(validationSplit * 100)}% validation split over ${listing.classes.length} classes`,
    );
  }
  return split;
}

export interface DecodedImage extends RgbImage {
  file: DatasetFile;
}

export interface SkippedFile {
  file: string;
  reason: string;
}

export interface DecodeResult {
  images: DecodedImage[];
  skipped: SkippedFile[];
  /** sha256 per relPath of the raw bytes, for the dataset fingerprint. */
  hashes: Map<string, string>;
}

export interface DecodeOptions {
  size: number;
  resize?: ResizeMode;
  /** Files in flight at once: bounds memory while keeping libvips' threads busy. */
  concurrency?: number;
  onProgress?: (done: number, total: number) => void;
}

/** Decodes files in parallel (bounded); a file that fails is skipped and reported, never fatal. */
export async function decodeFiles(files: DatasetFile[], opts: DecodeOptions): Promise<DecodeResult> {
  const { size, resize = 'stretch', concurrency = 8, onProgress } = opts;
  const images: (DecodedImage | undefined)[] = new Array(files.length);
  const skipped: SkippedFile[] = [];
  const hashes = new Map<string, string>();
  let next = 0;
  let done = 0;
  const worker = async () => {
    while (next < files.length) {
      const i = next++;
      const file = files[i];
      try {
        const bytes = await readFile(file.absPath);
        hashes.set(file.relPath, createHash('sha256').update(bytes).digest('hex'));
        images[i] = { ...(await decodeImage(bytes, { size, resize })), file };
      } catch (e) {
        skipped.push({ file: file.relPath, reason: (e as Error).message });
      }
      onProgress?.(++done, files.length);
    }
  };
  await Promise.all(Array.from({ length: Math.min(concurrency, files.length) }, worker));
  skipped.sort((a, b) => (a.file < b.file ? -1 : 1));
  return { images: images.filter((x): x is DecodedImage => !!x), skipped, hashes };
}

/** Hash of the sorted file list and contents: identifies the exact data a model was trained on. */
export function datasetFingerprint(classes: string[], hashes: Map<string, string>): string {
  const h = createHash('sha256');
  h.update(JSON.stringify(classes));
  for (const k of [...hashes.keys()].sort()) h.update(`${k}\0${hashes.get(k)}\n`);
  return h.digest('hex');
}

/** Order of training examples for one epoch: a seeded shuffle, different every epoch. */
export function epochOrder(n: number, seed: number, epoch: number): number[] {
  return shuffleInPlace(
    Array.from({ length: n }, (_, i) => i),
    createRng((seed * 1_000_003 + epoch * 7919) >>> 0),
  );
}
