// The training side of `edgetune export` and `train --export`: model folder (or s3://) in, images
// from a folder or the training run, core/export does the writing and verifying.
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { type ExportOptions, type Exports, exportFormats, type LabelledPixels } from '../core/export/export-formats.js';
import type { FormatId } from '../core/export/formats.js';
import type { RgbImage } from '../core/image.js';
import { type Manifest, type Verification, VerificationSchema } from '../core/manifest.js';
import { loadModel, s3Source } from '../core/model-loader.js';
import { isS3Uri, parseS3Uri } from '../core/s3/uri.js';
import type { tf } from '../core/tf.js';
import { decodeFiles, listDataset } from './dataset.js';
import { refreshReportFormats } from './report/refresh.js';

export function labelledPixels(images: readonly RgbImage[], labels: readonly number[], source: string): LabelledPixels {
  const size = images[0]?.width ?? 0;
  return {
    pixels: Buffer.concat(images.map((i) => i.data)),
    shape: [images.length, size, size, 3],
    labels: [...labels],
    source,
  };
}

/** Every decodable image of a folder whose class subfolders carry the model's class names. */
export async function folderPixels(dir: string, manifest: Manifest): Promise<LabelledPixels> {
  const listing = await listDataset(dir);
  const unknown = listing.classes.filter((c) => !manifest.classes.includes(c));
  if (unknown.length) throw new Error(`class folders ${unknown.join(', ')} are not classes of the model (${manifest.classes.join(', ')})`);
  const files = listing.files.map((f) => ({ ...f, label: manifest.classes.indexOf(listing.classes[f.label]) }));
  const decoded = await decodeFiles(files, { size: manifest.input.size, resize: manifest.input.resize });
  if (!decoded.images.length) throw new Error(`no decodable images in ${dir}`);
  return labelledPixels(
    decoded.images,
    decoded.images.map((i) => i.file.label),
    `${path.resolve(dir)} (${decoded.images.length} images)`,
  );
}

async function readVerificationOf(uri: string): Promise<Verification | undefined> {
  let text: string;
  try {
    if (isS3Uri(uri)) {
      const { bucket, key } = parseS3Uri(uri);
      text = (await s3Source(bucket, key.replace(/\/+$/, '')).read('verification.json')).body.toString('utf8');
    } else text = await readFile(path.join(uri, 'verification.json'), 'utf8');
  } catch {
    return undefined;
  }
  const r = VerificationSchema.safeParse(JSON.parse(text));
  if (!r.success) throw new Error(`${uri}: verification.json is invalid`);
  return r.data;
}

/** `edgetune export`: loads the model, verifies every format on verification.json (+ --data), writes them into `out`. */
export async function exportModelFormats(
  modelUri: string,
  ids: readonly FormatId[],
  opts: { out?: string; data?: string; log?: (line: string) => void },
): Promise<{ exports: Exports; outDir: string }> {
  const { model, manifest, uri } = await loadModel(modelUri);
  try {
    const outDir = opts.out ?? (isS3Uri(uri) ? undefined : uri);
    if (!outDir) throw new Error('--out <dir> is needed for a model on S3');
    const data = opts.data ? await folderPixels(opts.data, manifest) : undefined;
    const exports = await exportFormats(model, manifest, ids, {
      outDir,
      verification: await readVerificationOf(uri),
      data,
      calibration: data,
      log: opts.log,
    });
    if (await refreshReportFormats(outDir, manifest))
      opts.log?.(`report: formats table updated in ${path.join(outDir, 'report', 'index.html')}`);
    return { exports, outDir };
  } finally {
    model.dispose();
  }
}

/** `train --export`: the trained model, its validation images for verification, its training images for calibration. */
export async function exportAfterTraining(
  model: tf.LayersModel,
  manifest: Manifest,
  outDir: string,
  ids: readonly FormatId[],
  images: { validation: readonly RgbImage[]; labels: readonly number[]; calibration?: ExportOptions['calibration'] },
  log: (line: string) => void,
): Promise<Exports> {
  const exports = await exportFormats(model, manifest, ids, {
    outDir,
    data: images.validation.length
      ? labelledPixels(images.validation, images.labels, `validation split (${images.validation.length} images)`)
      : undefined,
    calibration: images.calibration,
    log,
  });
  await refreshReportFormats(outDir, manifest);
  return exports;
}
