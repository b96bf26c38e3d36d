// The report's table of export formats (exports.json): size, accuracy, agreement with the float32
// tfjs model, latency where measured.
import type { Exports } from '../../core/export/exports-file.js';
import { esc } from './html.js';

const mb = (b: number) => `${(b / 1e6).toFixed(2)} MB`;

export function formatsSection(exports: Exports | undefined): string {
  if (!exports?.exports.length) return '';
  const rows = exports.exports.map((e) => {
    const v = e.verification;
    const acc =
      v.accuracy === undefined
        ? '–'
        : `${(100 * v.accuracy).toFixed(1)}%${v.referenceAccuracy !== undefined ? ` <span class="muted">(tfjs ${(100 * v.referenceAccuracy).toFixed(1)}%)</span>` : ''}`;
    const dp = `${v.maxAbsDiff.toExponential(1)}${v.tolerance !== undefined ? ` <span class="muted">≤ ${v.tolerance}</span>` : ''}`;
    return [
      `<code>${esc(e.format)}</code>`,
      `<code>${esc(e.file)}</code>`,
      mb(e.bytes),
      esc(e.weights),
      acc,
      dp,
      `${(100 * v.top1Agreement).toFixed(1)}%`,
      e.latencyMs !== undefined ? `${e.latencyMs.toFixed(1)} ms` : '–',
      esc(e.runtime),
    ];
  });
  const head = ['Format', 'File', 'Size', 'Weights', 'Accuracy', 'max |Δp|', 'Top-1 agreement', 'Latency', 'Runtime'];
  const images = exports.exports[0].verification;
  return `<h2>Export formats</h2>
<table><thead><tr>${head.map((h) => `<th>${h}</th>`).join('')}</tr></thead><tbody>${rows.map((r) => `<tr>${r.map((c) => `<td>${c}</td>`).join('')}</tr>`).join('')}</tbody></table>
<p class="muted">Each file run in its own runtime on the same uint8 pixels as the float32 tfjs model (${images.images} images: ${esc(images.sources.join(', '))}); accuracy on the labelled ones. Latency: median of single-image runs on 1 thread at export time, where measured. From <code>exports.json</code>.</p>`;
}
