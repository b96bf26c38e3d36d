import { createHash } from 'node:crypto';
import { mkdir, readdir, readFile, rename, rm, stat, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { cleanEtag, getObject, isNotFound, listObjects, putObject } from '../core/s3/client.js';
import { mapLimit } from '../core/s3/retry.js';
import { asPrefix, parseS3Uri } from '../core/s3/uri.js';

/** Hidden from listDataset (leading dot): which ETag each cached file was downloaded at. */
const INDEX = '.edgetune-etags.json';
/** Objects that are signals, not data (datasets/<name>/_RETRAIN starts a run). */
const isMarker = (rel: string) => path.posix.basename(rel) === '_RETRAIN';

/** Image types training reads (by extension; the decoder checks the bytes themselves). */
export const IMAGE_EXTENSIONS = ['.jpg', '.jpeg', '.png', '.webp', '.gif', '.bmp'] as const;
/** Largest object the sync downloads, by the size in the listing. Default 32 MiB (a 16-megapixel photo is a few MB). */
export const DEFAULT_MAX_OBJECT_BYTES = 32 * 1024 * 1024;

export interface SkippedKey {
  key: string;
  reason: string;
}

export interface SyncOptions {
  /** Root of the local caches; the dataset lands in <cacheDir>/<bucket>/<prefix>. Default .edgetune/cache/datasets. */
  cacheDir?: string;
  /** Objects larger than this (from the listing) are skipped, never downloaded. Default DEFAULT_MAX_OBJECT_BYTES. */
  maxObjectBytes?: number;
  /** Extra non-image files to sync (e.g. label manifests), by their path below the prefix. Default none. */
  acceptExtra?: (rel: string) => boolean;
  /** Images anywhere below the prefix, not only in class folders (a label manifest gives the classes). Default false. */
  anyLayout?: boolean;
  concurrency?: number;
  log?: (line: string) => void;
  onProgress?: (p: { done: number; total: number; key: string; cached: boolean }) => void;
}

export interface SyncStats {
  dir: string;
  objects: number;
  downloaded: number;
  cached: number;
  removed: number;
  bytesDownloaded: number;
  /** Keys left out, each with the reason: not an image, too large, outside a class folder, an unsafe name, gone. */
  skipped: SkippedKey[];
}

type Index = Record<string, { etag: string; size: number }>;

/** Why a listed object is not synced, or undefined when it is wanted. Decided from the listing alone. */
export function skipReason(
  rel: string,
  size: number,
  opts: { maxObjectBytes: number; acceptExtra?: (rel: string) => boolean; anyLayout?: boolean },
): string | undefined {
  // biome-ignore lint/suspicious/noControlCharactersInRegex: control characters are what is refused here
  if (/[\u0000-\u001f\u007f\\]/.test(rel)) return 'unsafe characters in the key';
  const segments = rel.split('/');
  if (segments.some((s) => s === '' || s === '.' || s === '..')) return 'the key escapes the dataset folder or has empty segments';
  if (path.posix.isAbsolute(rel)) return 'absolute key';
  if (segments.some((s) => s.startsWith('.'))) return 'hidden file';
  if (opts.acceptExtra?.(rel)) return size > opts.maxObjectBytes ? `larger than ${opts.maxObjectBytes} bytes (${size})` : undefined;
  if (segments.length < 2 && !opts.anyLayout) return 'not inside a class folder (<class>/<image>)';
  const ext = path.posix.extname(rel).toLowerCase();
  if (!(IMAGE_EXTENSIONS as readonly string[]).includes(ext)) return `not an image type training reads (${ext || 'no extension'})`;
  if (size > opts.maxObjectBytes) return `larger than ${opts.maxObjectBytes} bytes (${size})`;
  if (size === 0) return 'empty object';
  return undefined;
}

/**
 * Mirrors s3://bucket/datasets/<name>/ into a local folder (class = first path segment below the
 * prefix, exactly like a local dataset folder), downloading with bounded concurrency and retries.
 * Files whose ETag and size match the last download are not fetched again; files deleted from S3
 * are removed locally. Returns the folder to hand to the local dataset loader.
 */
export async function syncDatasetWithStats(s3Uri: string, opts: SyncOptions = {}): Promise<SyncStats> {
  const { bucket, key } = parseS3Uri(s3Uri);
  const prefix = asPrefix(key);
  const dir = path.resolve(opts.cacheDir ?? '.edgetune/cache/datasets', bucket, prefix);
  await mkdir(dir, { recursive: true });
  const indexPath = path.join(dir, INDEX);
  const index: Index = JSON.parse(await readFile(indexPath, 'utf8').catch(() => '{}'));
  const { objects } = await listObjects(bucket, prefix);
  const maxObjectBytes = opts.maxObjectBytes ?? DEFAULT_MAX_OBJECT_BYTES;
  const skipped: SkippedKey[] = [];
  const wanted: Array<(typeof objects)[number] & { rel: string }> = [];
  for (const o of objects) {
    const rel = o.key.slice(prefix.length);
    if (o.key.endsWith('/') || isMarker(rel)) continue;
    const reason = skipReason(rel, o.size, { maxObjectBytes, acceptExtra: opts.acceptExtra, anyLayout: opts.anyLayout });
    if (reason) skipped.push({ key: o.key, reason });
    else wanted.push({ ...o, rel, etag: cleanEtag(o.etag) });
  }
  if (!wanted.length && !skipped.length)
    throw new Error(`no objects under s3://${bucket}/${prefix} (expected <class>/<image> keys below it)`);
  if (!wanted.length) {
    throw new Error(
      `no usable objects under s3://${bucket}/${prefix} (expected <class>/<image> keys below it)` +
        (skipped.length ? `; skipped ${skipped.length}, e.g. ${skipped[0].key}: ${skipped[0].reason}` : ''),
    );
  }

  const stats: SyncStats = { dir, objects: wanted.length, downloaded: 0, cached: 0, removed: 0, bytesDownloaded: 0, skipped };
  let done = 0;
  const saveIndex = () => writeFile(`${indexPath}.tmp`, JSON.stringify(index)).then(() => rename(`${indexPath}.tmp`, indexPath));
  try {
    await mapLimit(wanted, opts.concurrency ?? 8, async (o) => {
      const local = path.join(dir, o.rel);
      const have = index[o.rel];
      const st = have ? await stat(local).catch(() => undefined) : undefined;
      const cached = Boolean(have && st && have.etag === o.etag && st.size === o.size);
      if (!cached) {
        let body: Buffer;
        try {
          ({ body } = await getObject(`s3://${bucket}/${o.key}`));
        } catch (e) {
          // Deleted between the listing and the download: skip it, like any other bad key.
          if (!isNotFound(e)) throw e;
          skipped.push({ key: o.key, reason: 'deleted while syncing' });
          opts.onProgress?.({ done: ++done, total: wanted.length, key: o.key, cached: false });
          return;
        }
        if (body.byteLength > maxObjectBytes) {
          skipped.push({ key: o.key, reason: `larger than ${maxObjectBytes} bytes (${body.byteLength}) when downloaded` });
          opts.onProgress?.({ done: ++done, total: wanted.length, key: o.key, cached: false });
          return;
        }
        await mkdir(path.dirname(local), { recursive: true });
        const part = `${local}.part-${process.pid}`;
        await writeFile(part, body);
        await rename(part, local);
        index[o.rel] = { etag: o.etag, size: body.byteLength };
        stats.downloaded++;
        stats.bytesDownloaded += body.byteLength;
      } else {
        stats.cached++;
      }
      opts.onProgress?.({ done: ++done, total: wanted.length, key: o.key, cached });
    });
    const skippedKeys = new Set(skipped.map((k) => k.key));
    const listed = new Set(wanted.filter((o) => !skippedKeys.has(o.key)).map((o) => o.rel));
    for (const rel of Object.keys(index)) {
      if (listed.has(rel)) continue;
      await rm(path.join(dir, rel), { force: true });
      delete index[rel];
      stats.removed++;
    }
  } finally {
    // Keep what did arrive, so a rerun after a failure only fetches the rest.
    await saveIndex();
  }
  opts.log?.(
    `dataset s3://${bucket}/${prefix}: ${stats.objects} objects, ${stats.downloaded} downloaded (${stats.bytesDownloaded} bytes), ` +
      `${stats.cached} cached, ${stats.removed} removed, ${skipped.length} skipped -> ${dir}`,
  );
  for (const k of skipped.slice(0, 20)) opts.log?.(`  skipped ${k.key}: ${k.reason}`);
  if (skipped.length > 20) opts.log?.(`  ... and ${skipped.length - 20} more skipped keys`);
  return stats;
}

/**
 * The key of a label manifest below an S3 dataset's prefix: `labels.csv` (relative to the
 * prefix) or a full s3:// URI, which must sit below the same prefix, next to the images.
 */
export function labelsKey(dataUri: string, labels: string): string {
  const { bucket, key } = parseS3Uri(dataUri);
  const prefix = asPrefix(key);
  let rel = labels;
  if (labels.startsWith('s3://')) {
    const l = parseS3Uri(labels);
    if (l.bucket !== bucket || !l.key.startsWith(prefix)) {
      throw new Error(`the labels file ${labels} must sit below the dataset, s3://${bucket}/${prefix}`);
    }
    rel = l.key.slice(prefix.length);
  }
  const reason = skipReason(rel, 0, { maxObjectBytes: 0, acceptExtra: () => true });
  if (reason) throw new Error(`labels key ${JSON.stringify(labels)}: ${reason}`);
  return rel;
}

/** syncDatasetWithStats, returning just the local folder. */
export async function syncDataset(s3Uri: string, opts: SyncOptions = {}): Promise<string> {
  return (await syncDatasetWithStats(s3Uri, opts)).dir;
}

async function walkFiles(dir: string): Promise<string[]> {
  const out: string[] = [];
  for (const e of await readdir(dir, { withFileTypes: true })) {
    if (e.name.startsWith('.')) continue;
    const p = path.join(dir, e.name);
    if (e.isDirectory()) out.push(...(await walkFiles(p)));
    else if (e.isFile()) out.push(p);
  }
  return out.sort();
}

const CONTENT_TYPES: Record<string, string> = {
  '.jpg': 'image/jpeg',
  '.jpeg': 'image/jpeg',
  '.png': 'image/png',
  '.webp': 'image/webp',
  '.gif': 'image/gif',
  '.bmp': 'image/bmp',
};

export interface UploadOptions {
  concurrency?: number;
  onProgress?: (p: { done: number; total: number; file: string; skipped: boolean; bytes: number }) => void;
}

/**
 * Uploads every file of a local folder (hidden files excluded) below an S3 prefix, keeping the
 * relative paths; files whose MD5 equals the object's ETag already there are skipped.
 */
export async function uploadDataset(
  dir: string,
  s3Uri: string,
  opts: UploadOptions = {},
): Promise<{ uploaded: number; skipped: number; bytes: number; total: number }> {
  const root = path.resolve(dir);
  const st = await stat(root).catch(() => undefined);
  if (!st?.isDirectory()) throw new Error(`not a folder: ${root}`);
  const { bucket, key } = parseS3Uri(s3Uri);
  const prefix = asPrefix(key);
  const files = await walkFiles(root);
  if (!files.length) throw new Error(`no files to upload in ${root}`);
  const existing = new Map((await listObjects(bucket, prefix)).objects.map((o) => [o.key, cleanEtag(o.etag)]));
  let done = 0;
  const out = { uploaded: 0, skipped: 0, bytes: 0, total: files.length };
  await mapLimit(files, opts.concurrency ?? 8, async (file) => {
    const rel = path.relative(root, file).split(path.sep).join('/');
    const body = await readFile(file);
    const md5 = createHash('md5').update(body).digest('hex');
    const objectKey = prefix + rel;
    const skipped = existing.get(objectKey) === md5;
    if (!skipped) {
      await putObject(`s3://${bucket}/${objectKey}`, body, {
        ContentType: CONTENT_TYPES[path.extname(file).toLowerCase()] ?? 'application/octet-stream',
      });
      out.uploaded++;
      out.bytes += body.byteLength;
    } else {
      out.skipped++;
    }
    opts.onProgress?.({ done: ++done, total: files.length, file: rel, skipped, bytes: body.byteLength });
  });
  return out;
}
