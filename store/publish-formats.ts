// `publish --formats`: the exported files of a model folder (exports.json) staged for upload into a
// version under `formats/`, each checked against its exports.json sha256 before anything is uploaded,
// and read back from S3 after.
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { readExportsFile } from '../core/export/exports-file.js';
import { mediaTypeOf } from '../core/export/format-files.js';
import type { FormatId } from '../core/export/formats.js';
import type { Manifest, PublishedFormat } from '../core/manifest.js';
import { ModelIntegrityError } from '../core/model-loader.js';
import { getObjectIfExists } from '../core/s3/client.js';
import { mapLimit } from '../core/s3/retry.js';
import { joinKey } from '../core/s3/uri.js';
import { sha256 } from '../core/versioning.js';

/** Where a version keeps its exported files (the tfjs model itself stays at the version's root). */
export const FORMATS_FOLDER = 'formats';

export interface FormatUpload {
  /** Key relative to the version folder. */
  rel: string;
  body: Buffer;
  sha256: string;
  type: string;
}

export interface StagedFormats {
  /** Manifest records of the exported formats (tfjs, the model itself, is added by the publisher). */
  records: PublishedFormat[];
  /** Distinct files to upload (labels.txt is shared by the TFLite formats). */
  uploads: FormatUpload[];
}

/**
 * Reads exports.json and every file of the requested formats (all but `tfjs`), checking each against
 * its recorded size and sha256. Throws, naming what is missing or changed, before anything is uploaded.
 */
export async function stageFormats(dir: string, ids: readonly FormatId[], manifest: Manifest): Promise<StagedFormats> {
  const wanted = ids.filter((id) => id !== 'tfjs');
  if (!wanted.length) return { records: [], uploads: [] };
  const file = path.join(dir, 'exports.json');
  const exportHint = `run \`edgetune export ${dir} --format ${wanted.join(',')}\` first`;
  const ex = await readExportsFile(file);
  if (!ex) throw new Error(`publish --formats ${wanted.join(',')}: ${dir} has no exports.json; ${exportHint}`);
  if (ex.model.version !== manifest.version) {
    throw new Error(
      `publish --formats: ${file} is for model version ${ex.model.version}, the folder holds ${manifest.version}; ${exportHint}`,
    );
  }
  const missing = wanted.filter((id) => !ex.exports.some((e) => e.format === id));
  if (missing.length) {
    throw new Error(
      `publish --formats: ${missing.join(', ')} not exported in ${dir} (exports.json has ${ex.exports.map((e) => e.format).join(', ') || 'none'}); ${exportHint}`,
    );
  }
  const uploads = new Map<string, FormatUpload>();
  const records: PublishedFormat[] = [];
  for (const id of wanted) {
    const rec = ex.exports.find((e) => e.format === id)!;
    const files = [];
    for (const f of rec.files) {
      const rel = path.posix.normalize(f.path);
      if (rel.startsWith('..') || path.posix.isAbsolute(rel))
        throw new Error(`publish --formats: ${file} names a file outside the folder: ${f.path}`);
      let body: Buffer;
      try {
        body = await readFile(path.join(dir, rel));
      } catch (e) {
        throw new Error(`publish --formats: ${id}'s file ${path.join(dir, rel)} cannot be read (${(e as Error).message}); ${exportHint}`);
      }
      const sum = sha256(body);
      if (sum !== f.sha256 || body.byteLength !== f.bytes) {
        throw new Error(
          `publish --formats: ${path.join(dir, rel)} changed since it was exported (sha256 or size differs from exports.json); ${exportHint}`,
        );
      }
      const key = `${FORMATS_FOLDER}/${rel}`;
      uploads.set(key, { rel: key, body, sha256: sum, type: mediaTypeOf(rel) });
      files.push({ path: key, bytes: f.bytes, sha256: f.sha256 });
    }
    const v = rec.verification;
    records.push({
      id,
      file: `${FORMATS_FOLDER}/${path.posix.normalize(rec.file)}`,
      bytes: rec.bytes,
      sha256: rec.sha256,
      files,
      runtime: rec.runtime,
      weights: rec.weights,
      maxAbsDiff: v.maxAbsDiff,
      top1Agreement: v.top1Agreement,
      accuracy: v.accuracy,
      referenceAccuracy: v.referenceAccuracy,
      measuredOn: `${v.images} images (${v.sources.join(', ')})`,
    });
  }
  return { records, uploads: [...uploads.values()] };
}

/** Reads every uploaded format file back and checks its size and sha256; throws on the first that differs or is missing. */
export async function verifyUploadedFormats(bucket: string, versionPrefix: string, uploads: readonly FormatUpload[]): Promise<void> {
  await mapLimit([...uploads], 4, async (u) => {
    const uri = `s3://${bucket}/${joinKey(versionPrefix, u.rel)}`;
    const back = await getObjectIfExists(uri);
    if (!back) throw new ModelIntegrityError(`${uri} is missing after upload`);
    if (back.body.byteLength !== u.body.byteLength || sha256(back.body) !== u.sha256) {
      throw new ModelIntegrityError(`${uri} reads back different bytes from the ones uploaded (sha256 mismatch)`);
    }
  });
}
