// The training side of `edgetune export` and `train --export`: model folder (or s3://) in, images
// from a folder or the training run, core/export does the writing and verifying.
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { type ExportOptions, type Exports, exportFormats, type LabelledPixels } from '../core/export/export-formats.js';
import { FORMATS, type FormatId } from '../core/export/formats.js';
import type { RgbImage } from '../core/image.js';
import { type Manifest, type Verification, VerificationSchema } from '../core/manifest.js';
import { loadModel, s3Source } from '../core/model-loader.js';
import { isS3Uri, parseS3Uri } from '../core/s3/uri.js';
import type { tf } from '../core/tf.js';
import { sha256 } from '../core/versioning.js';
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

/**
 * `export --data` with a format that needs calibration (int8): the images of each class alternate
 * between calibration (even positions) and verification/accuracy (odd ones), so no image is used for
 * both; images byte-identical to one of verification.json's are never calibration images either.
 */
export function splitCalibration(
  data: LabelledPixels,
  verification?: Verification,
): { calibration: LabelledPixels; verify: LabelledPixels } {
  const [n, h, w] = data.shape;
  const per = h * w * 3;
  const image = (i: number) => data.pixels.subarray(i * per, (i + 1) * per);
  const held = new Set<string>();
  if (verification && verification.shape[1] === h && verification.shape[2] === w) {
    const px = Buffer.from(verification.pixels, 'base64');
    for (let i = 0; i < verification.shape[0]; i++) held.add(sha256(px.subarray(i * per, (i + 1) * per)));
  }
  const seen = new Map<number, number>();
  const cal: number[] = [];
  const ver: number[] = [];
  for (let i = 0; i < n; i++) {
    const label = data.labels[i] ?? -1;
    const k = seen.get(label) ?? 0;
    seen.set(label, k + 1);
    if (k % 2 === 0 && !held.has(sha256(image(i)))) cal.push(i);
    else ver.push(i);
  }
  const pick = (idx: number[], what: string): LabelledPixels => ({
    pixels: Buffer.concat(idx.map(image)),
    shape: [idx.length, h, w, 3],
    labels: data.labels.length ? idx.map((i) => data.labels[i]) : [],
    source: `${data.source.replace(/ \(\d+ images\)$/, '')} (${idx.length} ${what} images)`,
  });
  return { calibration: pick(cal, 'calibration'), verify: pick(ver, 'held-out') };
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
    const needsCalibration = ids.filter((id) => FORMATS[id].needsCalibration);
    if (needsCalibration.length && !opts.data) {
      throw new Error(
        `format ${needsCalibration.join(', ')} needs calibration images: give --data <folder> (class subfolders; half calibrate, the others verify)`,
      );
    }
    const verification = await readVerificationOf(uri);
    const all = opts.data ? await folderPixels(opts.data, manifest) : undefined;
    // int8: calibrate on one part of --data, verify and measure accuracy on the others.
    const split = all && needsCalibration.length ? splitCalibration(all, verification) : undefined;
    if (split) {
      if (!split.calibration.shape[0] || !split.verify.shape[0])
        throw new Error(`${opts.data}: too few images to calibrate on some and verify on the others`);
      opts.log?.(`--data: calibrating on ${split.calibration.source}, verifying on ${split.verify.source}`);
    }
    const exports = await exportFormats(model, manifest, ids, {
      outDir,
      verification,
      data: split?.verify ?? all,
      calibration: split?.calibration,
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
