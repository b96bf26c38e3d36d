import type { Manifest } from '../../core/manifest.js';

// The same escaping as html.ts (which imports this module): dataset paths and labels come from users.
const ESCAPES: Record<string, string> = { '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' };
const esc = (v: unknown) => String(v).replace(/[&<>"']/g, (c) => ESCAPES[c]);

const rowsHtml = (rows: string[][]) => rows.map((r) => `<tr>${r.map((c) => `<td>${c}</td>`).join('')}</tr>`).join('');
const tableHtml = (head: string[], rows: string[][], cls = '') =>
  `<table${cls ? ` class="${cls}"` : ''}><thead><tr>${head.map((h) => `<th>${h}</th>`).join('')}</tr></thead><tbody>${rowsHtml(rows)}</tbody></table>`;

/**
 * "Data checks": files per class and side of the split, the smallest and largest class, exact
 * duplicates (across classes and across the split) and the warnings the CLI printed. Empty for
 * manifests written before the data report existed.
 */
export function dataChecksSection(m: Manifest): string {
  const r = m.dataset.report;
  if (!r) return '';
  const hasTest = Object.values(r.perClass).some((c) => c.test > 0);
  const counts = tableHtml(
    ['Class', 'Train', 'Validation', ...(hasTest ? ['Test'] : []), 'Total'],
    Object.entries(r.perClass).map(([c, n]) => {
      const total = n.train + n.validation + n.test;
      const mark = c === r.smallest.class ? ' <small>(smallest)</small>' : c === r.largest.class ? ' <small>(largest)</small>' : '';
      return [`<code>${esc(c)}</code>${mark}`, String(n.train), String(n.validation), ...(hasTest ? [String(n.test)] : []), String(total)];
    }),
    'num',
  );
  const d = r.duplicates;
  const dupSummary = d.groups
    ? `<p>${d.groups} set(s) of identical files (${d.files} files): <strong>${d.crossClass}</strong> with different labels, <strong>${d.crossSplit}</strong> on both sides of the split.</p>`
    : '<p class="muted">No two listed files have the same content.</p>';
  const dupTable = d.examples.length
    ? `<details${d.crossClass || d.crossSplit ? ' open' : ''}><summary>${d.examples.length === d.groups ? 'all' : `first ${d.examples.length} of ${d.groups}`} sets</summary>${tableHtml(
        ['Files (class, split)', 'Files in set', 'sha256'],
        d.examples.map((e) => [
          e.files.map((f) => `<code>${esc(f.file)}</code> (${esc(f.class)}, ${esc(f.split)})`).join('<br>'),
          String(e.count),
          `<small><code>${esc(e.sha256.slice(0, 16))}</code></small>`,
        ]),
      )}</details>`
    : '';
  const warnings = r.warnings.length ? `<div class="warning"><strong>Data:</strong><br>${r.warnings.map(esc).join('<br>')}</div>` : '';
  const labels = r.labels
    ? `<p>Labels from <code>${esc(r.labels.file)}</code>; ${r.labels.unlisted} image(s) in the folder are not listed${
        r.labels.unlistedExamples.length
          ? `, e.g. ${r.labels.unlistedExamples
              .slice(0, 5)
              .map((u) => `<code>${esc(u)}</code>`)
              .join(' ')}`
          : ''
      }.</p>`
    : '';
  const imbalance = `<p>Largest class / smallest class: ${r.imbalance.toFixed(1)}×.${r.unhashed ? ` ${r.unhashed} file(s) could not be read to hash.` : ''}</p>`;
  return `<h2>Data checks</h2>${warnings}${labels}${counts}${imbalance}${dupSummary}${dupTable}`;
}
