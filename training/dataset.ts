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
  /** Pre-assigned by a label manifest's split column; unset files are split randomly. */
  split?: 'train' | 'validation' | 'test';
  /** sha256 (hex) of the file bytes, set by decodeStream when it reads them (unset if unreadable). */
  sha256?: string;
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
  /** Held out, never trained or selected on: --test-split's share, and files a label manifest assigns to `test`. */
  test: DatasetFile[];
}

const isImage = (name: string) => IMAGE_EXTENSIONS.includes(path.extname(name).toLowerCase() as (typeof IMAGE_EXTENSIONS)[number]);
const isHidden = (name: string) => name.startsWith('.') || name.startsWith('_');

/** Image files below `dir`, recursively, sorted, hidden (`.x`, `_x`) entries left out. */
export async function walkImages(dir: string): Promise<string[]> {
  const out: string[] = [];
  const entries = await readdir(dir, { withFileTypes: true });
  entries.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  for (const e of entries) {
    if (isHidden(e.name)) continue;
    const p = path.join(dir, e.name);
    if (e.isDirectory()) out.push(...(await walkImages(p)));
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
    const found = await walkImages(path.join(abs, name));
    if (!found.length) empty.push(name);
    for (const f of found) files.push({ relPath: path.relative(abs, f).split(path.sep).join('/'), absPath: f, label });
  }
  if (empty.length) throw new DatasetError(`class folder(s) with no images: ${empty.join(', ')} (in ${abs})`);
  return { root: abs, classes, files };
}

/**
 * Seeded, reproducible, non-overlapping split. Like Keras: shuffle the file list with the seed,
 * the last `validationSplit` share is validation. Stratified: the same per class. Files with a
 * pre-assigned `split` (label manifests) go where they say; only the rest are split randomly,
 * so with none pre-assigned the split is exactly the random one.
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
  const free = listing.files.filter((f) => !f.split);
  let split: Split;
  if (stratified) {
    split = { train: [], validation: [], test: [] };
    for (let c = 0; c < listing.classes.length; c++) {
      const part = cut(free.filter((f) => f.label === c));
      split.train.push(...part.train);
      split.validation.push(...part.validation);
      split.test.push(...part.test);
    }
  } else {
    split = cut(free);
  }
  for (const f of listing.files) if (f.split) split[f.split].push(f);
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

export interface DecodedFile {
  index: number;
  file: DatasetFile;
  /** sha256 of the raw bytes; undefined when the file could not be read. */
  hash?: string;
  image?: DecodedImage;
  /** Why the file was skipped (unreadable or undecodable). */
  error?: string;
}

/**
 * Decodes files in order with bounded parallelism, so memory stays bounded whatever the file count.
 * Sets each readable file's `sha256` from the same bytes.
 */
export async function* decodeStream(files: readonly DatasetFile[], opts: DecodeOptions): AsyncGenerator<DecodedFile> {
  const { size, resize = 'stretch', concurrency = 8, onProgress } = opts;
  // `concurrency` files decode at once; up to as many again wait, finished, for an earlier one.
  let active = 0;
  const waiting: (() => void)[] = [];
  const one = async (index: number): Promise<DecodedFile> => {
    if (active >= concurrency) await new Promise<void>((resolve) => waiting.push(resolve));
    active++;
    try {
      return await decodeOne(index);
    } finally {
      active--;
      waiting.shift()?.();
    }
  };
  const decodeOne = async (index: number): Promise<DecodedFile> => {
    const file = files[index];
    let hash: string | undefined;
    try {
      const bytes = await readFile(file.absPath);
      // Each file is read once: its hash for the fingerprint and the data report comes from these bytes.
      hash = createHash('sha256').update(bytes).digest('hex');
      file.sha256 = hash;
      return { index, file, hash, image: { ...(await decodeImage(bytes, { size, resize })), file } };
    } catch (e) {
      return { index, file, hash, error: (e as Error).message };
    }
  };
  const pending: Promise<DecodedFile>[] = [];
  let next = 0;
  let done = 0;
  const fill = () => {
    while (next < files.length && pending.length < 2 * concurrency) pending.push(one(next++));
  };
  fill();
  while (pending.length) {
    const r = await (pending.shift() as Promise<DecodedFile>);
    fill();
    onProgress?.(++done, files.length);
    yield r;
  }
}

/** Decodes files in parallel (bounded) and keeps them all; a file that fails is skipped and reported, never fatal. */
export async function decodeFiles(files: DatasetFile[], opts: DecodeOptions): Promise<DecodeResult> {
  const images: DecodedImage[] = [];
  const skipped: SkippedFile[] = [];
  const hashes = new Map<string, string>();
  for await (const r of decodeStream(files, opts)) {
    if (r.hash) hashes.set(r.file.relPath, r.hash);
    if (r.image) images.push(r.image);
    else skipped.push({ file: r.file.relPath, reason: r.error ?? 'not decodable' });
  }
  skipped.sort((a, b) => (a.file < b.file ? -1 : 1));
  return { images, skipped, hashes };
}

/**
 * Hash of the sorted file list and contents: identifies the exact data a model was trained on.
 * `labels` (relPath -> class, from a label manifest, where the path does not fix the class) and
 * `splits` (pre-assigned splits) are hashed too when given; without them the value is unchanged.
 */
export function datasetFingerprint(
  classes: string[],
  hashes: Map<string, string>,
  assigned?: { labels: Map<string, string>; splits?: Map<string, string> },
): string {
  const h = createHash('sha256');
  h.update(JSON.stringify(classes));
  for (const k of [...hashes.keys()].sort()) {
    const extra = assigned ? `\0${assigned.labels.get(k) ?? ''}\0${assigned.splits?.get(k) ?? ''}` : '';
    h.update(`${k}\0${hashes.get(k)}${extra}\n`);
  }
  return h.digest('hex');
}

/** Order of training examples for one epoch: a seeded shuffle, different every epoch. */
export function epochOrder(n: number, seed: number, epoch: number): number[] {
  return shuffleInPlace(
    Array.from({ length: n }, (_, i) => i),
    createRng((seed * 1_000_003 + epoch * 7919) >>> 0),
  );
}
