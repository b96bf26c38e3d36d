import type { Exports } from '../../core/export/exports-file.js';
import type { Manifest, Metrics } from '../../core/manifest.js';
import { dataChecksSection } from './data-section.js';
import { formatsSection } from './formats.js';

/** The report page: figures plus every figure a reviewer asks for, self-contained (inline CSS, relative image links). */

export interface ReportAssets {
  accuracy?: string;
  loss?: string;
  confusion: string;
  augmentation?: string;
  /** exports.json of the model folder, for the formats table. */
  exports?: Exports;
  /** Reliability diagram (when the manifest has a temperature). */
  reliability?: string;
  /** The gallery sections' HTML (training/report/gallery.ts), already escaped. */
  gallery?: string;
}

const ESCAPES: Record<string, string> = { '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' };
/** Dataset paths, file names and skip reasons come from users: always escape. */
export const esc = (v: unknown) => String(v).replace(/[&<>"']/g, (c) => ESCAPES[c]);

const pct = (x: number) => `${(100 * x).toFixed(1)}%`;
const f4 = (x: number) => x.toFixed(4);

function duration(s: number): string {
  if (s < 60) return `${s.toFixed(1)} s`;
  const m = Math.floor(s / 60);
  return `${m} min ${(s - 60 * m).toFixed(0).padStart(2, '0')} s`;
}

function delta(after: number, before: number, higherIsBetter: boolean, fmt: (x: number) => string): string {
  const d = after - before;
  if (Math.abs(d) < 1e-9) return '<span class="delta">±0</span>';
  const good = higherIsBetter ? d > 0 : d < 0;
  return `<span class="delta ${good ? 'good' : 'bad'}">${d > 0 ? '+' : '−'}${fmt(Math.abs(d))}</span>`;
}

function figure(file: string | undefined, alt: string, caption: string, cls = ''): string {
  if (!file) return '';
  const png = file.replace(/\.svg$/, '.png');
  const links = file.endsWith('.svg')
    ? ` <a href="${esc(file)}">SVG</a> · <a href="${esc(png)}">PNG</a>`
    : ` <a href="${esc(file)}">full size</a>`;
  return `<figure${cls ? ` class="${cls}"` : ''}><img src="${esc(file)}" alt="${esc(alt)}"><figcaption>${caption}${links}</figcaption></figure>`;
}

function table(head: string[], rows: string[][], cls = ''): string {
  return `<table${cls ? ` class="${cls}"` : ''}><thead><tr>${head.map((h) => `<th>${h}</th>`).join('')}</tr></thead><tbody>${rows
    .map((r) => `<tr>${r.map((c) => `<td>${c}</td>`).join('')}</tr>`)
    .join('')}</tbody></table>`;
}

function summary(m: Manifest): string {
  const { frozen, fineTuned } = m.metrics;
  const final = fineTuned ?? frozen;
  const card = (label: string, value: string, sub: string) =>
    `<div class="card"><div class="label">${label}</div><div class="value">${value}</div><div class="sub">${sub}</div></div>`;
  const cards = [
    card(
      'Validation accuracy',
      pct(final.valAccuracy),
      fineTuned
        ? `after fine-tuning; base frozen ${pct(frozen.valAccuracy)} ${delta(fineTuned.valAccuracy, frozen.valAccuracy, true, (x) => `${(100 * x).toFixed(1)} pt`)}`
        : 'base frozen (no fine-tuning phase)',
    ),
    card(
      'Validation loss',
      f4(final.valLoss),
      fineTuned
        ? `after fine-tuning; base frozen ${f4(frozen.valLoss)} ${delta(fineTuned.valLoss, frozen.valLoss, false, f4)}`
        : 'base frozen',
    ),
  ];
  if (final.auc !== undefined) cards.push(card('ROC AUC', final.auc.toFixed(4), `P(${esc(m.classes[1])}) ranking, validation set`));
  const test = m.metrics.test;
  if (test) {
    cards.push(
      card(
        'Test accuracy',
        pct(test.valAccuracy),
        `${m.dataset.counts.test ?? ''} untouched test images: selection-free${test.auc !== undefined ? ` · AUC ${test.auc.toFixed(4)}` : ''}`,
      ),
    );
  }
  cards.push(
    card(
      'Images',
      String(m.dataset.counts.train + m.dataset.counts.validation),
      `${m.dataset.counts.train} train · ${m.dataset.counts.validation} validation`,
    ),
  );
  if (m.timings.totalSeconds !== undefined) cards.push(card('Training time', duration(m.timings.totalSeconds), esc(m.backend)));
  return `<div class="cards">${cards.join('')}</div>`;
}

function metricsTable(m: Manifest): string {
  const { frozen, fineTuned, test } = m.metrics;
  const phases: Array<[string, Metrics]> = [['Base frozen', frozen]];
  if (fineTuned) phases.push(['After fine-tuning', fineTuned]);
  if (test) phases.push(['Test split (final model)', test]);
  const overall = table(
    ['Phase', 'Accuracy', 'Loss', ...(m.classes.length === 2 ? ['ROC AUC'] : [])],
    phases.map(([name, x]) => [
      name,
      pct(x.valAccuracy),
      f4(x.valLoss),
      ...(m.classes.length === 2 ? [x.auc !== undefined ? x.auc.toFixed(4) : 'n/a'] : []),
    ]),
    'num',
  );
  const head = ['Class', 'Support'];
  for (const [name] of phases)
    head.push(`Precision<br><small>${name.toLowerCase()}</small>`, `Recall<br><small>${name.toLowerCase()}</small>`);
  const perClass = table(
    head,
    m.classes.map((label, k) => {
      const row = [`<code>${esc(label)}</code>`, String(frozen.perClass[k]?.support ?? '')];
      for (const [, x] of phases) row.push(pct(x.perClass[k]?.precision ?? 0), pct(x.perClass[k]?.recall ?? 0));
      return row;
    }),
    'num',
  );
  return overall + perClass + selectionNotes(m);
}

/** Which figures are selection-free, which epochs were kept and why, and the class weights. */
function selectionNotes(m: Manifest): string {
  const notes: string[] = [];
  const sel = Object.entries(m.selection ?? {}).filter(([, s]) => s);
  const chose = sel.some(([, s]) => s?.restoreBest || s?.stoppedEarly);
  notes.push(
    chose
      ? 'Validation figures are <strong>not selection-free</strong>: the kept epochs were chosen on the validation loss, which flatters them.'
      : 'No epoch was chosen on the validation set (each phase kept its last epoch); the defaults themselves were chosen on validation splits.',
  );
  for (const [phase, s] of sel) notes.push(`${phase === 'frozen' ? 'Base frozen' : 'Fine-tuning'}: ${esc(s?.reason)}.`);
  notes.push(
    m.metrics.test
      ? `The test split (${m.dataset.counts.test ?? '?'} images) was used for nothing else: its figures are <strong>selection-free</strong>, and the promotion gate uses them.`
      : 'There is no test split (<code>--test-split</code>): no figure here is fully selection-free.',
  );
  if (m.classWeights) {
    notes.push(
      `Class weights in the loss: ${Object.entries(m.classWeights)
        .map(([c, w]) => `<code>${esc(c)}</code> ${w.toFixed(3)}`)
        .join(', ')}; the per-class recall above shows their effect.`,
    );
  }
  return `<ul class="notes">${notes.map((n) => `<li>${n}</li>`).join('')}</ul>`;
}

function historyTable(m: Manifest): string {
  if (!m.history.length) return '<p class="muted">No epochs were run.</p>';
  return table(
    ['Epoch', 'Phase', 'Loss', 'Accuracy', 'Val loss', 'Val accuracy', 'Time'],
    m.history.map((h) => [
      String(h.epoch),
      `${h.phase === 'frozen' ? 'base frozen' : 'fine-tuning'}${m.selection?.[h.phase]?.keptEpoch === h.epoch && m.selection?.[h.phase]?.restoreBest ? ' (kept)' : ''}`,
      f4(h.loss),
      pct(h.accuracy),
      f4(h.valLoss),
      pct(h.valAccuracy),
      duration(h.seconds),
    ]),
    'num',
  );
}

function datasetSection(m: Manifest): string {
  const d = m.dataset;
  const counts = table(
    ['Class', 'Images'],
    Object.entries(d.counts.perClass).map(([c, n]) => [`<code>${esc(c)}</code>`, String(n)]),
    'num',
  );
  const skipped = d.skipped.length
    ? `<details${d.skipped.length <= 10 ? ' open' : ''}><summary>${d.skipped.length} skipped file(s)</summary>${table(
        ['File', 'Reason'],
        d.skipped.map((s) => [`<code>${esc(s.file)}</code>`, esc(s.reason)]),
      )}</details>`
    : '<p class="muted">No files were skipped.</p>';
  return `<dl class="kv">
  <dt>Source</dt><dd><code>${esc(d.source)}</code></dd>
  <dt>Fingerprint</dt><dd><code>${esc(d.fingerprint)}</code></dd>
  <dt>Split</dt><dd>${d.counts.train} training · ${d.counts.validation} validation</dd>
</dl>${counts}${skipped}`;
}

function kvTable(entries: Array<[string, string]>): string {
  return `<dl class="kv">${entries.map(([k, v]) => `<dt>${esc(k)}</dt><dd>${v}</dd>`).join('')}</dl>`;
}

function modelSection(m: Manifest): string {
  const w = m.backbone.weights;
  const rows: Array<[string, string]> = [
    ['Classes (output order)', m.classes.map((c) => `<code>${esc(c)}</code>`).join(' ')],
    ['Output', m.output === 'sigmoid' ? `sigmoid: P(<code>${esc(m.classes[1])}</code>)` : 'softmax'],
    [
      'Input',
      `${m.input.size}×${m.input.size} RGB, resize ${esc(m.input.resize)}; x·${m.preprocessing.scale.toPrecision(6)} ${m.preprocessing.offset < 0 ? '−' : '+'} ${Math.abs(m.preprocessing.offset)} in the model`,
    ],
    ['Backbone', `MobileNetV2 α=${m.backbone.alpha}, fine-tuned from base layer ${m.backbone.fineTuneAt}`],
    ['Weights', `${esc(w.kind)} <code>${esc(w.source)}</code>${w.sha256 ? `<br><small>sha256 ${esc(w.sha256)}</small>` : ''}`],
    ['Backend', esc(m.backend)],
  ];
  if (m.quantization) {
    const q = m.quantization;
    rows.push([
      'Quantization',
      `${esc(q.dtype)}: ${(q.weightBytes / 1e6).toFixed(1)} MB (from ${(q.unquantizedWeightBytes / 1e6).toFixed(1)} MB), val accuracy ${pct(q.valAccuracy)} (unquantized ${pct(q.unquantizedValAccuracy)})`,
    ]);
  }
  return kvTable(rows);
}

function timingsSection(m: Manifest): string {
  const names: Record<string, string> = {
    decodeSeconds: 'Decode images',
    loadSeconds: 'Load base weights',
    frozenSeconds: 'Phase 1: base frozen',
    fineTuneSeconds: 'Phase 2: fine-tuning',
    postTrainingSeconds: 'After training: calibration, open set, review',
    exportSeconds: 'Export',
    totalSeconds: 'Total',
    dataCpuSeconds: 'CPU, all threads: listing and decoding',
    frozenCpuSeconds: 'CPU, all threads: phase 1',
    fineTuneCpuSeconds: 'CPU, all threads: phase 2',
    postTrainingCpuSeconds: 'CPU, all threads: after training',
    exportCpuSeconds: 'CPU, all threads: export',
    totalCpuSeconds: 'CPU, all threads: total',
  };
  // Counts and rates are not durations.
  const value = (k: string, v: number) => (k.endsWith('Seconds') ? duration(v) : Number.isInteger(v) ? String(v) : v.toFixed(1));
  const rows = Object.entries(m.timings).map(([k, v]): [string, string] => [names[k] ?? k, value(k, v)]);
  return rows.length ? kvTable(rows) : '<p class="muted">No timings recorded.</p>';
}

function hyperparameterSection(m: Manifest): string {
  const entries = Object.entries(m.hyperparameters);
  if (!entries.length) return '<p class="muted">None recorded.</p>';
  return kvTable(entries.map(([k, v]) => [k, `<code>${esc(typeof v === 'string' ? v : JSON.stringify(v))}</code>`]));
}

const CSS = `
:root { --fg:#1d2433; --muted:#667085; --line:#e4e7ec; --bg:#f7f8fa; --accent:#1f77b4; }
* { box-sizing: border-box; }
body { margin:0; font: 14px/1.5 "DejaVu Sans", "Segoe UI", Helvetica, Arial, sans-serif; color:var(--fg); background:var(--bg); }
main { max-width: 1140px; margin: 0 auto; padding: 28px 24px 48px; }
header h1 { margin:0 0 4px; font-size: 24px; }
header .meta { color: var(--muted); }
h2 { font-size: 17px; margin: 32px 0 12px; padding-bottom: 6px; border-bottom: 1px solid var(--line); }
code { font: 12.5px/1.4 "DejaVu Sans Mono", Menlo, Consolas, monospace; background:#eef1f5; padding:1px 4px; border-radius:3px; }
dl.kv code { overflow-wrap: anywhere; }
table code { white-space: nowrap; }
.warning { background:#fff4e5; border:1px solid #f5c27a; color:#7a4a00; padding:10px 14px; border-radius:6px; margin:16px 0; }
.cards { display:grid; grid-template-columns: repeat(auto-fit, minmax(190px, 1fr)); gap:12px; margin-top:20px; }
.card { background:white; border:1px solid var(--line); border-radius:8px; padding:12px 14px; }
.card .label { color:var(--muted); font-size:12px; text-transform:uppercase; letter-spacing:.04em; }
.card .value { font-size:26px; font-weight:600; margin:2px 0; font-variant-numeric: tabular-nums; }
.card .sub { color:var(--muted); font-size:12px; }
.delta { font-weight:600; } .delta.good { color:#1a7f37; } .delta.bad { color:#c62828; }
.figs { display:grid; grid-template-columns: repeat(auto-fit, minmax(480px, 1fr)); gap:16px; }
figure { margin:0; background:white; border:1px solid var(--line); border-radius:8px; padding:10px; text-align:center; }
figure img { max-width:100%; height:auto; }
figure.aug img { max-height: 480px; }
figcaption { color:var(--muted); font-size:12px; margin-top:6px; }
table { border-collapse: collapse; background:white; border:1px solid var(--line); margin: 0 0 14px; font-variant-numeric: tabular-nums; }
th, td { padding:6px 12px; border-bottom:1px solid var(--line); text-align:left; vertical-align: top; }
th { background:#f0f2f5; font-weight:600; font-size:12.5px; }
table.num td:not(:first-child), table.num th:not(:first-child) { text-align:right; }
.cols { display:grid; grid-template-columns: repeat(auto-fit, minmax(420px, 1fr)); gap: 0 28px; }
dl.kv { display:grid; grid-template-columns: max-content minmax(0, 1fr); gap:4px 16px; margin:0 0 14px; background:white; border:1px solid var(--line); border-radius:8px; padding:10px 14px; }
dl.kv dt { color:var(--muted); } dl.kv dd { margin:0; min-width:0; overflow-wrap:anywhere; }
.muted { color: var(--muted); }
details summary { cursor:pointer; margin: 6px 0; }
footer { margin-top: 40px; color: var(--muted); font-size: 12px; }
`;

export function reportHtml(m: Manifest, assets: ReportAssets): string {
  const final = m.metrics.fineTuned ? 'after fine-tuning' : 'base frozen';
  const warning = m.backbone.weights.warning
    ? `<div class="warning"><strong>Backbone weights:</strong> ${esc(m.backbone.weights.warning)}</div>`
    : '';
  const curves =
    assets.accuracy || assets.loss
      ? `<div class="figs">${figure(assets.accuracy, 'Training and validation accuracy per epoch', 'Accuracy per epoch; the dashed line marks the start of fine-tuning.')}${figure(assets.loss, 'Training and validation loss per epoch', 'Loss per epoch (binary or categorical cross-entropy).')}</div>`
      : '<p class="muted">No epochs were run, so there are no training curves.</p>';
  return `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>${esc(m.name)} ${esc(m.version)}: training report</title>
<style>${CSS}</style>
</head>
<body>
<main>
<header>
<h1>${esc(m.name)} <span class="muted" style="font-weight:400">training report</span></h1>
<div class="meta">version <code>${esc(m.version)}</code> · trained ${esc(m.createdAt)} · ${m.classes.length} classes: ${m.classes.map((c) => `<code>${esc(c)}</code>`).join(' ')}</div>
</header>
${warning}
${summary(m)}
<h2>Training curves</h2>
${curves}
<h2>Validation results</h2>
<div class="cols">
<div>${metricsTable(m)}</div>
<div>${figure(assets.confusion, 'Confusion matrix', `Validation set, ${final}. Rows: true class; columns: prediction.`)}</div>
</div>
${calibrationSection(m, assets)}
${assets.gallery ?? ''}
${assets.augmentation ? `<h2>Augmentation</h2><div class="figs">${figure(assets.augmentation, 'Augmented variants of one validation image', 'Random augmentations applied to one image, as the training loop draws them.', 'aug')}</div>` : ''}
${formatsSection(assets.exports)}
<h2>Epochs</h2>
${historyTable(m)}
<div class="cols">
<div><h2>Dataset</h2>${datasetSection(m)}</div>
<div><h2>Model</h2>${modelSection(m)}<h2>Timings</h2>${timingsSection(m)}</div>
</div>
${dataChecksSection(m)}
<h2>Hyperparameters</h2>
${hyperparameterSection(m)}
<footer>Generated by edgetune from <code>manifest.json</code>. Figures drawn with Vega-Lite; PNG copies rendered from the SVGs.</footer>
</main>
</body>
</html>
`;
}

function calibrationSection(m: Manifest, assets: ReportAssets): string {
  const c = m.calibration;
  const o = m.openSet;
  if (!c && !o) return '';
  const cal = c
    ? `<dl class="kv"><dt>temperature</dt><dd>${c.temperature.toFixed(3)} (fitted on the ${esc(c.fittedOn)}; never on a test split)</dd><dt>ECE</dt><dd>${f4(c.eceBefore)} → ${f4(c.eceAfter)} (${c.bins} bins, on the photos T was fitted on, so the after figure flatters; bench:open-set measures it on held-out photos)</dd><dt>NLL</dt><dd>${f4(c.nllBefore)} → ${f4(c.nllAfter)}</dd></dl>`
    : '';
  const open = o
    ? `<dl class="kv"><dt>unknown above</dt><dd>${o.metric === 'mahalanobis-shared-lowrank' ? `Mahalanobis score (shared covariance, rank ${o.rank ?? '?'}, shrinkage ${o.shrinkage ?? '?'})` : 'cosine distance'} ${f4(o.threshold)} to the nearest class mean (95% bootstrap interval ${f4(o.interval[0])}–${f4(o.interval[1])}, ${o.bootstrap} resamples)</dd><dt>chosen for</dt><dd>${pct(o.target)} of in-class photos accepted; ${pct(o.accepted)} of the ${o.n} photos of the ${esc(o.fittedOn)} are</dd><dt>class means</dt><dd>${esc(o.meansFrom)}</dd></dl>`
    : '';
  return `<h2>Calibration and "unknown"</h2><div class="cols"><div>${cal}${open}</div><div>${figure(assets.reliability, 'Reliability diagram', 'Accuracy against confidence before and after temperature scaling; the diagonal is perfect calibration.')}</div></div>`;
}
