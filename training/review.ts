// `edgetune review`: runs a trained model over a folder of photos (class subfolders, like training;
// a folder name that is not a class of the model is a class it never saw) and lists every photo with
// its predicted class, calibrated probability, open-set distance and why it deserves a look, as a
// label-manifest CSV (`path,label` first) that can be corrected and fed back with `--labels`.
// Photos are decoded a batch at a time; only their pooled embeddings are kept (for near-duplicates).
import { readdir, readFile, stat } from 'node:fs/promises';
import path from 'node:path';
import { HEAD } from '../core/classifier.js';
import { createFastForward, type FastForward } from '../core/fast-forward.js';
import { argmax, probabilityRows, temperedProbabilities } from '../core/head-convention.js';
import { decodeImage, type RgbImage } from '../core/image.js';
import type { Manifest } from '../core/manifest.js';
import { decodeOpenSetStats, openSetDistance } from '../core/open-set-score.js';
import type { LayersModel } from '../core/tf.js';
import { tf } from '../core/tf.js';
import { similarPairs } from './near-duplicates.js';
import { DUPLICATE_MAX_IMAGES, DUPLICATE_SIMILARITY } from './post-training.js';

const IMAGE = /\.(jpe?g|png|webp|gif|bmp)$/i;

export type ReviewReason = 'unknown' | 'misclassified' | 'not-a-class' | 'near-duplicate' | 'undecodable' | '';

export interface ReviewRow {
  /** Relative to the data folder, forward slashes. */
  path: string;
  /** The folder's label: its first path segment ('' for photos at the top). */
  label: string;
  predicted: string;
  probability: number;
  distance?: number;
  reason: ReviewReason;
  /** For near-duplicates: the other photo. */
  other?: string;
  loss?: number;
}

export interface ReviewSummary {
  images: number;
  /** Photos whose folder is one of the model's classes. */
  inClass: number;
  inClassRejected: number;
  inClassCorrect: number;
  /** Photos whose folder is not a class of the model. */
  outside: number;
  outsideFlagged: number;
  undecodable: number;
  duplicates: number;
  threshold?: number;
  calibrated: boolean;
  duplicateSearch: string;
}

async function walk(root: string, dir = root): Promise<string[]> {
  const out: string[] = [];
  const entries = (await readdir(dir, { withFileTypes: true })).sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  for (const e of entries) {
    if (e.name.startsWith('.') || e.name.startsWith('_')) continue;
    const p = path.join(dir, e.name);
    if (e.isDirectory()) out.push(...(await walk(root, p)));
    else if (e.isFile() && IMAGE.test(e.name)) out.push(path.relative(root, p).split(path.sep).join('/'));
  }
  return out;
}

/** Probabilities (calibrated when the manifest has a temperature), embeddings and open-set distances of a batch. */
function scorer(model: LayersModel, manifest: Manifest) {
  const ff: FastForward = createFastForward(model);
  const numClasses = manifest.classes.length;
  const stats = manifest.openSet ? decodeOpenSetStats(manifest.openSet, numClasses) : undefined;
  const T = manifest.calibration?.temperature;
  return {
    score(images: RgbImage[]) {
      const size = manifest.input.size;
      const px = new Float32Array(images.length * size * size * 3);
      for (const [i, im] of images.entries()) px.set(im.data, i * size * size * 3);
      const outs = tf.tidy(() =>
        ff.forwardMany(tf.tensor4d(px, [images.length, size, size, 3]), { to: [ff.outputName, HEAD.logits, HEAD.pool] }),
      );
      const [probs, logits, pooled] = outs.map((o) => o.dataSync() as Float32Array);
      tf.dispose(outs);
      const raw = probabilityRows(probs, numClasses);
      const units = logits.length / images.length;
      const dim = pooled.length / images.length;
      return images.map((_, i) => {
        const emb = pooled.slice(i * dim, (i + 1) * dim);
        return {
          probabilities: T ? temperedProbabilities(logits.subarray(i * units, (i + 1) * units), numClasses, T) : raw[i],
          embedding: emb,
          distance: stats && stats.dim === dim ? openSetDistance(emb, stats).distance : undefined,
        };
      });
    },
    dispose: () => ff.dispose(),
  };
}

/** Reviews every photo under `dataDir` with the model; rows flagged first (worst first), then the rest. */
export async function reviewFolder(
  model: LayersModel,
  manifest: Manifest,
  dataDir: string,
  opts: { threshold?: number; batch?: number; onProgress?: (done: number, total: number) => void } = {},
): Promise<{ rows: ReviewRow[]; summary: ReviewSummary }> {
  const root = path.resolve(dataDir);
  if (!(await stat(root).catch(() => undefined))?.isDirectory()) throw new Error(`review: data folder not found: ${root}`);
  const files = await walk(root);
  if (!files.length) throw new Error(`review: no images under ${root}`);
  const threshold = opts.threshold ?? manifest.openSet?.threshold;
  const classes = new Set(manifest.classes);
  const s = scorer(model, manifest);
  const rows: ReviewRow[] = [];
  const embeddings: { row: ReviewRow; emb: Float32Array }[] = [];
  const batch = opts.batch ?? 16;
  try {
    for (let start = 0; start < files.length; start += batch) {
      const chunk = files.slice(start, start + batch);
      const decoded: { rel: string; img: RgbImage }[] = [];
      for (const rel of chunk) {
        const label = rel.includes('/') ? rel.split('/')[0] : '';
        try {
          const img = await decodeImage(await readFile(path.join(root, rel)), { size: manifest.input.size, resize: manifest.input.resize });
          decoded.push({ rel, img });
        } catch (e) {
          rows.push({ path: rel, label, predicted: '', probability: 0, reason: 'undecodable', other: (e as Error).message });
        }
      }
      if (decoded.length) {
        const scored = s.score(decoded.map((d) => d.img));
        decoded.forEach((d, i) => {
          const label = d.rel.includes('/') ? d.rel.split('/')[0] : '';
          const p = scored[i].probabilities;
          const k = argmax(p);
          const unknown = threshold !== undefined && scored[i].distance !== undefined && scored[i].distance > threshold;
          const y = manifest.classes.indexOf(label);
          const reason: ReviewReason = unknown ? 'unknown' : y < 0 ? (label ? 'not-a-class' : '') : k !== y ? 'misclassified' : '';
          const row: ReviewRow = {
            path: d.rel,
            label,
            predicted: manifest.classes[k],
            probability: p[k],
            distance: scored[i].distance,
            reason,
            ...(y >= 0 ? { loss: -Math.log(Math.max(p[y], 1e-12)) } : {}),
          };
          rows.push(row);
          if (files.length <= DUPLICATE_MAX_IMAGES) embeddings.push({ row, emb: scored[i].embedding });
        });
      }
      opts.onProgress?.(Math.min(files.length, start + batch), files.length);
    }
  } finally {
    s.dispose();
  }

  // Near-duplicates whose folders disagree: at most one of them can be right.
  const dim = embeddings[0]?.emb.length ?? 1;
  const matrix = new Float32Array(embeddings.length * dim);
  for (const [i, { emb }] of embeddings.entries()) matrix.set(emb, i * dim);
  const pairs = similarPairs(matrix, dim, DUPLICATE_SIMILARITY, (i, j) => embeddings[i].row.label !== embeddings[j].row.label);
  for (const { i, j } of pairs) {
    const a = embeddings[i].row;
    const b = embeddings[j].row;
    for (const [r, o] of [
      [a, b],
      [b, a],
    ] as const) {
      if (r.reason === '') {
        r.reason = 'near-duplicate';
        r.other = o.path;
      }
    }
  }
  const duplicates = pairs.length;

  const rank = (r: ReviewRow) => (r.reason === '' ? 1 : 0);
  rows.sort((a, b) => rank(a) - rank(b) || (b.loss ?? b.distance ?? 0) - (a.loss ?? a.distance ?? 0) || (a.path < b.path ? -1 : 1));
  const decodedRows = rows.filter((r) => r.reason !== 'undecodable');
  const inClass = decodedRows.filter((r) => classes.has(r.label));
  const outside = decodedRows.filter((r) => !classes.has(r.label));
  return {
    rows,
    summary: {
      images: rows.length,
      inClass: inClass.length,
      inClassRejected: inClass.filter((r) => r.reason === 'unknown').length,
      inClassCorrect: inClass.filter((r) => r.predicted === r.label).length,
      outside: outside.length,
      outsideFlagged: outside.filter((r) => r.reason === 'unknown').length,
      undecodable: rows.length - decodedRows.length,
      duplicates,
      ...(threshold !== undefined ? { threshold } : {}),
      calibrated: manifest.calibration !== undefined,
      duplicateSearch:
        files.length <= DUPLICATE_MAX_IMAGES
          ? `pairs in different folders with cosine similarity >= ${DUPLICATE_SIMILARITY}`
          : `skipped: over ${DUPLICATE_MAX_IMAGES} images`,
    },
  };
}

const csvCell = (v: string) => (/[",\n\r]/.test(v) ? `"${v.replace(/"/g, '""')}"` : v);

/** The label-manifest CSV: `path,label` (what `--labels` reads), then what the review found. */
export function reviewCsv(rows: readonly ReviewRow[]): string {
  const head = 'path,label,predicted,probability,distance,reason,other';
  const lines = rows.map((r) =>
    [r.path, r.label, r.predicted, r.probability.toFixed(4), r.distance === undefined ? '' : r.distance.toFixed(4), r.reason, r.other ?? '']
      .map(csvCell)
      .join(','),
  );
  return `${[head, ...lines].join('\n')}\n`;
}

/** One paragraph for the terminal (and the bench). */
export function describeSummary(s: ReviewSummary): string {
  const pct = (a: number, b: number) => (b ? `${((100 * a) / b).toFixed(1)}%` : 'n/a');
  return [
    `${s.images} photos reviewed (${s.undecodable} undecodable); probabilities ${s.calibrated ? 'temperature-scaled' : 'uncalibrated (no temperature in the manifest)'}`,
    s.threshold === undefined
      ? 'open set: the model has no class means, nothing is flagged unknown'
      : `open-set threshold ${s.threshold.toFixed(4)}`,
    `in-class photos (folder is a model class): ${s.inClass}, accuracy ${pct(s.inClassCorrect, s.inClass)}, rejected as unknown ${s.inClassRejected} (${pct(s.inClassRejected, s.inClass)})`,
    `photos of other folders (not a model class): ${s.outside}, flagged unknown ${s.outsideFlagged} (${pct(s.outsideFlagged, s.outside)})`,
    `near-duplicates across folders: ${s.duplicates} pair(s) (${s.duplicateSearch})`,
  ].join('\n');
}
