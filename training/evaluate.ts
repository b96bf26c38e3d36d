import { initBackend } from '../core/backend.js';
import type { Metrics } from '../core/manifest.js';
import { loadModel } from '../core/model-loader.js';
import { type DecodedImage, decodeStream, listDataset } from './dataset.js';
import { predictProbabilities } from './export.js';
import { computeMetrics } from './metrics.js';

export interface Evaluation {
  model: { name: string; version: string };
  images: number;
  skipped: { file: string; reason: string }[];
  metrics: Metrics;
}

const EVALUATE_BATCH = 64;

/** Evaluates a saved model (folder or s3://) on every image of a folder with the same class names. */
export async function evaluateModel(modelUri: string, dataDir: string): Promise<Evaluation> {
  await initBackend();
  const { model, manifest } = await loadModel(modelUri);
  try {
    const listing = await listDataset(dataDir);
    const unknown = listing.classes.filter((c) => !manifest.classes.includes(c));
    if (unknown.length) {
      throw new Error(`class folders ${unknown.join(', ')} are not classes of the model (${manifest.classes.join(', ')})`);
    }
    const files = listing.files.map((f) => ({ ...f, label: manifest.classes.indexOf(listing.classes[f.label]) }));
    // Decoded and predicted a batch at a time: a big folder is never held decoded.
    const probs: number[][] = [];
    const labels: number[] = [];
    const skipped: { file: string; reason: string }[] = [];
    let batch: DecodedImage[] = [];
    const flush = async () => {
      if (!batch.length) return;
      probs.push(...(await predictProbabilities(model, batch, manifest.classes.length)));
      labels.push(...batch.map((i) => i.file.label));
      batch = [];
    };
    for await (const r of decodeStream(files, { size: manifest.input.size, resize: manifest.input.resize })) {
      if (!r.image) {
        skipped.push({ file: r.file.relPath, reason: r.error ?? 'not decodable' });
        continue;
      }
      batch.push(r.image);
      if (batch.length >= EVALUATE_BATCH) await flush();
    }
    await flush();
    skipped.sort((a, b) => (a.file < b.file ? -1 : 1));
    if (!probs.length) throw new Error(`no decodable images in ${dataDir}`);
    const metrics = computeMetrics(probs, labels, manifest.classes);
    return { model: { name: manifest.name, version: manifest.version }, images: probs.length, skipped, metrics };
  } finally {
    model.dispose();
  }
}

export function formatEvaluation(e: Evaluation, classes: readonly string[]): string {
  const m = e.metrics;
  const lines = [`accuracy: ${m.valAccuracy.toFixed(4)}`, `loss: ${m.valLoss.toFixed(4)}`];
  if (m.auc !== undefined) lines.push(`auc: ${m.auc.toFixed(4)}`);
  for (const c of m.perClass) lines.push(`${c.label}: precision ${c.precision.toFixed(4)} recall ${c.recall.toFixed(4)} (n=${c.support})`);
  lines.push(`confusion (rows true, columns predicted: ${classes.join(', ')}):`);
  for (const [i, row] of m.confusion.entries()) lines.push(`  ${classes[i].padEnd(16)} ${row.map((v) => String(v).padStart(5)).join(' ')}`);
  lines.push(`images: ${e.images}, skipped: ${e.skipped.length}; model ${e.model.name} ${e.model.version}`);
  for (const s of e.skipped) lines.push(`  skipped ${s.file}: ${s.reason}`);
  return lines.join('\n');
}
