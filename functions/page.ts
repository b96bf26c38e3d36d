import { createHash } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { createRequire } from 'node:module';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

/** The API reference: swagger-ui's script and stylesheet from this origin (data: icons in its CSS); no inline code. */
export const DOCS_CSP =
  "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; " +
  "base-uri 'none'; form-action 'none'; frame-ancestors 'none'";
/** JSON answers need nothing. */
export const API_CSP = "default-src 'none'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

export const PAGE_STYLE = `  :root { font-family: system-ui, sans-serif; color: #1b1f24; background: #f6f7f9; }
  main { max-width: 42rem; margin: 2rem auto; padding: 0 1rem; }
  h1 { font-size: 1.4rem; margin-bottom: .25rem; }
  .muted { color: #5b6470; font-size: .9rem; }
  #drop { display: block; margin-top: 1rem; border: 2px dashed #9aa4b1; border-radius: .75rem; padding: 2rem; text-align: center; background: #fff; cursor: pointer; }
  #drop.over { border-color: #2f6fdf; background: #eef4ff; }
  #preview { max-width: 100%; max-height: 18rem; margin-top: 1rem; border-radius: .5rem; display: none; }
  #label { font-size: 1.6rem; font-weight: 600; margin: 1rem 0 .5rem; }
  .bar { display: grid; grid-template-columns: 9rem 1fr 4rem; gap: .5rem; align-items: center; margin: .25rem 0; }
  .track { background: #e3e7ec; border-radius: .25rem; height: .9rem; overflow: hidden; }
  .fill { background: #2f6fdf; height: 100%; }
  #error { color: #b42318; white-space: pre-wrap; }
  details { margin-top: 1.5rem; }
  input[type=password] { width: 100%; padding: .3rem; }
`;

export const PAGE_SCRIPT = `const $ = (id) => document.getElementById(id);
const keyInput = $('key');
keyInput.value = localStorage.getItem('edgetune-key') || '';
keyInput.addEventListener('change', () => { localStorage.setItem('edgetune-key', keyInput.value); loadModel(); });
const headers = () => keyInput.value ? { Authorization: 'Bearer ' + keyInput.value } : {};
const pct = (x) => (x * 100).toFixed(1) + '%';
function text(el, s) { el.textContent = s; }

async function loadModel() {
  try {
    const r = await fetch('v1/model', { headers: headers() });
    const j = await r.json();
    if (!r.ok) { text($('model'), 'Model: ' + (j.detail || r.status)); return; }
    const m = j.metrics.fineTuned || j.metrics.frozen;
    text($('model'), 'Model ' + j.name + ' version ' + j.version + ' · classes: ' + j.classes.join(', ') +
      ' · validation accuracy ' + pct(m.valAccuracy) + (m.auc !== undefined ? ' · AUC ' + m.auc.toFixed(3) : '') +
      ' · trained ' + j.trainedAt);
  } catch (e) { text($('model'), 'Model information unavailable: ' + e.message); }
}

async function classify(file) {
  text($('error'), ''); text($('label'), 'Classifying…'); $('bars').replaceChildren(); text($('latency'), '');
  const img = $('preview'); img.src = URL.createObjectURL(file); img.style.display = 'block';
  const t0 = performance.now();
  try {
    const r = await fetch('v1/classify', { method: 'POST', body: file, headers: { ...headers(), 'Content-Type': file.type || 'application/octet-stream' } });
    const j = await r.json();
    const rtt = performance.now() - t0;
    if (!r.ok) { text($('label'), ''); text($('error'), j.title + ': ' + j.detail); return; }
    text($('label'), j.label === null ? 'Unknown: none of the classes (best guess ' + j.predictions[0].label + ', ' + pct(j.score) + ')' : j.label + ' (' + pct(j.score) + (j.calibrated ? ', calibrated' : '') + ')');
    for (const p of j.predictions) {
      const row = document.createElement('div'); row.className = 'bar';
      const name = document.createElement('span'); name.textContent = p.label;
      const track = document.createElement('div'); track.className = 'track';
      const fill = document.createElement('div'); fill.className = 'fill'; fill.style.width = pct(p.score);
      track.append(fill);
      const val = document.createElement('span'); val.textContent = pct(p.score);
      row.append(name, track, val); $('bars').append(row);
    }
    text($('latency'), 'Round trip ' + rtt.toFixed(0) + ' ms · server ' + j.timings.totalMs.toFixed(1) + ' ms (decode ' +
      j.timings.decodeMs.toFixed(1) + ' ms, inference ' + j.timings.inferenceMs.toFixed(1) + ' ms) · model ' + j.model.version);
  } catch (e) { text($('label'), ''); text($('error'), 'Request failed: ' + e.message); }
}

$('file').addEventListener('change', (e) => { const f = e.target.files[0]; if (f) classify(f); });
const drop = $('drop');
drop.addEventListener('dragover', (e) => { e.preventDefault(); drop.classList.add('over'); });
drop.addEventListener('dragleave', () => drop.classList.remove('over'));
drop.addEventListener('drop', (e) => { e.preventDefault(); drop.classList.remove('over'); const f = e.dataTransfer.files[0]; if (f) classify(f); });
loadModel();
`;

/**
 * Content-Security-Policy of the page: exactly its own inline script and style (by their sha256, so
 * an injected script cannot run), fetches to this origin only, previews from blob: URLs, and
 * 'wasm-unsafe-eval' so in-browser inference (tfjs WASM) can compile WebAssembly later. Nothing else.
 */
const hash = (s: string) => `'sha256-${createHash('sha256').update(s, 'utf8').digest('base64')}'`;
export const PAGE_CSP =
  `default-src 'none'; script-src ${hash(PAGE_SCRIPT)} 'wasm-unsafe-eval'; style-src ${hash(PAGE_STYLE)}; img-src 'self' blob:; ` +
  "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

/** GET /: a small self-contained page (no external assets) to try the classifier; serve it with PAGE_CSP. */
export function renderPage(): string {
  return `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>edgetune classifier</title>
<style>${PAGE_STYLE}</style>
</head>
<body>
<main>
  <h1>edgetune classifier</h1>
  <p class="muted" id="model">Loading model information…</p>
  <label id="drop" for="file">Drop a photo here or click to pick one (JPEG, PNG, WebP, GIF)
    <input id="file" type="file" accept="image/jpeg,image/png,image/webp,image/gif" hidden>
  </label>
  <img id="preview" alt="the uploaded photo">
  <div id="result" aria-live="polite">
    <div id="label" data-testid="label"></div>
    <div id="bars"></div>
    <p class="muted" id="latency"></p>
  </div>
  <p id="error" role="alert"></p>
  <details><summary>API key</summary>
    <p class="muted">Only needed when this deployment requires one. Kept in this browser's local storage.</p>
    <input id="key" type="password" autocomplete="off" placeholder="Bearer key">
  </details>
</main>
<script>${PAGE_SCRIPT}</script>
</body>
</html>`;
}

/** GET /docs: swagger-ui from the installed swagger-ui-dist (pinned in package.json), no CDN. */
export function renderDocs(): string {
  return `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>edgetune API reference</title>
<link rel="stylesheet" href="docs/swagger-ui.css">
</head>
<body>
<div id="swagger-ui" data-spec="openapi.json"></div>
<script src="docs/swagger-ui-bundle.js"></script>
<script src="docs/init.js"></script>
</body>
</html>`;
}

const DOCS_INIT =
  "const el = document.getElementById('swagger-ui');\nwindow.ui = SwaggerUIBundle({ url: el.dataset.spec, dom_id: '#swagger-ui', deepLinking: true });\n";
const ASSET_TYPES: Record<string, string> = {
  'swagger-ui.css': 'text/css; charset=utf-8',
  'swagger-ui-bundle.js': 'text/javascript; charset=utf-8',
};
const assets = new Map<string, Uint8Array<ArrayBuffer>>();

/** swagger-ui-dist in node_modules, or the `swagger-ui/` folder the function bundles ship next to index.mjs. */
function swaggerDir(): string {
  try {
    return path.dirname(createRequire(import.meta.url).resolve('swagger-ui-dist/package.json'));
  } catch {
    return path.join(path.dirname(fileURLToPath(import.meta.url)), 'swagger-ui');
  }
}

export async function swaggerAsset(name: string): Promise<{ body: Uint8Array<ArrayBuffer>; type: string } | undefined> {
  if (name === 'init.js') return { body: new TextEncoder().encode(DOCS_INIT), type: 'text/javascript; charset=utf-8' };
  const type = ASSET_TYPES[name];
  if (!type) return undefined;
  let body = assets.get(name);
  if (!body) {
    try {
      body = new Uint8Array(await readFile(path.join(swaggerDir(), name)));
    } catch {
      return undefined;
    }
    assets.set(name, body);
  }
  return { body, type };
}
