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
  fieldset { margin-top: 1rem; border: 1px solid #d0d6de; border-radius: .5rem; }
  fieldset label { display: block; margin: .2rem 0; }
`;

export const PAGE_SCRIPT = `const $ = (id) => document.getElementById(id);
const keyInput = $('key');
keyInput.value = localStorage.getItem('edgetune-key') || '';
keyInput.addEventListener('change', () => { localStorage.setItem('edgetune-key', keyInput.value); loadModel(); });
const headers = () => keyInput.value ? { Authorization: 'Bearer ' + keyInput.value } : {};
const pct = (x) => (x * 100).toFixed(1) + '%';
const ms = (x) => x.toFixed(x < 10 ? 1 : 0) + ' ms';
function text(el, s) { el.textContent = s; }
// The server's image allowlist: both modes take the same files.
const TYPES = ['image/jpeg', 'image/png', 'image/webp', 'image/gif', 'image/bmp'];
let info = null;
let mode = 'api';
let lastFile = null;
const lastMs = { api: null, browser: null };

async function loadModel() {
  try {
    const r = await fetch('v1/model', { headers: headers() });
    const j = await r.json();
    if (!r.ok) { text($('model'), 'Model: ' + (j.detail || r.status)); return null; }
    info = j;
    const m = j.metrics.fineTuned || j.metrics.frozen;
    text($('model'), 'Model ' + j.name + ' version ' + j.version + ' · classes: ' + j.classes.join(', ') +
      ' · validation accuracy ' + pct(m.valAccuracy) + (m.auc !== undefined ? ' · AUC ' + m.auc.toFixed(3) : '') +
      ' · trained ' + j.trainedAt);
    return j;
  } catch (e) { text($('model'), 'Model information unavailable: ' + e.message); return null; }
}

function showResult(predictions, latency, api) {
  text($('label'), api && api.label === null
    ? 'Unknown: none of the classes (best guess ' + predictions[0].label + ', ' + pct(predictions[0].score) + ')'
    : predictions[0].label + ' (' + pct(predictions[0].score) + (api && api.calibrated ? ', calibrated' : '') + ')');
  for (const p of predictions) {
    const row = document.createElement('div'); row.className = 'bar'; row.dataset.label = p.label; row.dataset.score = String(p.score);
    const name = document.createElement('span'); name.textContent = p.label;
    const track = document.createElement('div'); track.className = 'track';
    const fill = document.createElement('div'); fill.className = 'fill'; fill.style.width = pct(p.score);
    track.append(fill);
    const val = document.createElement('span'); val.textContent = pct(p.score);
    row.append(name, track, val); $('bars').append(row);
  }
  text($('latency'), latency);
  const parts = [];
  if (lastMs.api !== null) parts.push('API round trip ' + ms(lastMs.api));
  if (lastMs.browser !== null) parts.push('in your browser ' + ms(lastMs.browser));
  text($('compare'), parts.length > 1 ? 'Last runs: ' + parts.join(' · ') : '');
}

async function classifyApi(file) {
  const t0 = performance.now();
  const r = await fetch('v1/classify', { method: 'POST', body: file, headers: { ...headers(), 'Content-Type': file.type || 'application/octet-stream' } });
  const j = await r.json();
  const rtt = performance.now() - t0;
  if (!r.ok) { text($('label'), ''); text($('error'), j.title + ': ' + j.detail); return; }
  lastMs.api = rtt;
  showResult(j.predictions, 'Round trip ' + rtt.toFixed(0) + ' ms · server ' + j.timings.totalMs.toFixed(1) + ' ms (decode ' +
    j.timings.decodeMs.toFixed(1) + ' ms, inference ' + j.timings.inferenceMs.toFixed(1) + ' ms) · model ' + j.model.version, j);
}

// In-browser mode: tfjs and its WASM backend from this origin, the published tfjs model, nothing uploaded.
let engine = null;
let tfReady = null;
function loadScript(src) {
  return new Promise((resolve, reject) => {
    const s = document.createElement('script'); s.src = src;
    s.onload = resolve; s.onerror = () => reject(new Error('cannot load ' + src));
    document.head.append(s);
  });
}
function startTf() {
  tfReady ??= (async () => {
    // tf.min.js bundles regenerator-runtime, which assigns the global regeneratorRuntime and, when that
    // throws in strict mode, falls back to Function(): declared here, the assignment succeeds and no eval is needed.
    globalThis.regeneratorRuntime ??= undefined;
    await loadScript('browser/tf.min.js');
    await loadScript('browser/tf-backend-wasm.min.js');
    tf.wasm.setWasmPaths(new URL('browser/', location.href).href);
    if (!(await tf.setBackend('wasm'))) throw new Error('the tfjs WASM backend did not start');
  })();
  tfReady.catch(() => { tfReady = null; });
  return tfReady;
}
async function browserEngine() {
  const m = await loadModel();
  if (!m) throw new Error('no model information');
  if (engine && engine.version === m.version) return engine;
  text($('label'), 'Loading the model into your browser…');
  const t0 = performance.now();
  await startTf();
  const model = await tf.loadLayersModel(new URL('v1/model/files/tfjs/model.json', location.href).href, { requestInit: { headers: headers() } });
  const size = model.inputs[0].shape[1];
  if (size !== m.inputSize) { model.dispose(); throw new Error('the published tfjs model takes ' + size + ' px, the API model ' + m.inputSize + ' px'); }
  tf.tidy(() => { model.predict(tf.zeros([1, size, size, 3])).dataSync(); });
  engine?.model.dispose();
  engine = { version: m.version, classes: m.classes, model, size, resize: m.inputResize || 'stretch', loadMs: performance.now() - t0, fresh: true };
  return engine;
}

/**
 * Same preprocessing as the server (core/image.ts): EXIF orientation, RGB, then libvips' linear
 * resize to size x size (stretch, or cover + centre crop): a triangle filter widened by the
 * downscale factor, so every source pixel counts (a canvas drawImage samples and blurs differently:
 * 1.9 against 0.5 mean |pixel difference| to the server on the alpaca photos).
 */
const MAX_PIXELS = 50000000;
function triangleTaps(inLen, outLen, scale, offset) {
  const support = Math.max(1, scale);
  const taps = [];
  for (let o = 0; o < outLen; o++) {
    const c = offset + (o + 0.5) * scale - 0.5;
    const lo = Math.max(0, Math.ceil(c - support)), hi = Math.min(inLen - 1, Math.floor(c + support));
    const idx = [], w = []; let sum = 0;
    for (let i = lo; i <= hi; i++) { const wt = 1 - Math.abs(i - c) / support; if (wt > 0) { idx.push(i); w.push(wt); sum += wt; } }
    if (!idx.length) { idx.push(Math.min(inLen - 1, Math.max(0, Math.round(c)))); w.push(1); sum = 1; }
    taps.push({ idx, w: w.map((x) => x / sum) });
  }
  return taps;
}
async function browserPixels(file, size, resize) {
  const bmp = await createImageBitmap(file, { imageOrientation: 'from-image' });
  const W = bmp.width, H = bmp.height;
  if (W * H > MAX_PIXELS) { bmp.close(); throw new Error('the image has more than ' + MAX_PIXELS / 1e6 + ' MP'); }
  const canvas = document.createElement('canvas'); canvas.width = W; canvas.height = H;
  const ctx = canvas.getContext('2d', { willReadFrequently: true });
  ctx.drawImage(bmp, 0, 0);
  bmp.close();
  const src = ctx.getImageData(0, 0, W, H).data;
  canvas.width = canvas.height = 0;
  // stretch: each axis on its own. crop is sharp's fit cover: resize so the short side fills (rounded
  // dimensions), then cut at its centre offset, (resized - size + 1) / 2 whole pixels.
  let sx = W / size, sy = H / size, ox = 0, oy = 0;
  if (resize === 'crop') {
    const s = Math.min(W, H) / size, rw = Math.max(size, Math.round(W / s)), rh = Math.max(size, Math.round(H / s));
    sx = W / rw; sy = H / rh;
    ox = Math.floor((rw - size + 1) / 2) * sx; oy = Math.floor((rh - size + 1) / 2) * sy;
  }
  const tx = triangleTaps(W, size, sx, ox), ty = triangleTaps(H, size, sy, oy);
  const rows = new Float32Array(H * size * 3);
  for (let y = 0; y < H; y++) {
    for (let o = 0; o < size; o++) {
      const t = tx[o]; let r = 0, g = 0, b = 0;
      for (let k = 0; k < t.idx.length; k++) { const j = (y * W + t.idx[k]) * 4, wt = t.w[k]; r += src[j] * wt; g += src[j + 1] * wt; b += src[j + 2] * wt; }
      const q = (y * size + o) * 3; rows[q] = r; rows[q + 1] = g; rows[q + 2] = b;
    }
  }
  const out = new Float32Array(size * size * 3);
  for (let o = 0; o < size; o++) {
    const t = ty[o];
    for (let x = 0; x < size; x++) {
      let r = 0, g = 0, b = 0;
      for (let k = 0; k < t.idx.length; k++) { const j = (t.idx[k] * size + x) * 3, wt = t.w[k]; r += rows[j] * wt; g += rows[j + 1] * wt; b += rows[j + 2] * wt; }
      const q = (o * size + x) * 3; out[q] = Math.round(r); out[q + 1] = Math.round(g); out[q + 2] = Math.round(b);
    }
  }
  return out;
}

async function classifyBrowser(file) {
  if (!TYPES.includes(file.type)) { text($('label'), ''); text($('error'), 'Unsupported Media Type: send ' + TYPES.join(', ') + ', not ' + (file.type || 'an unknown type')); return; }
  const e = await browserEngine();
  const t0 = performance.now();
  let pixels;
  try { pixels = await browserPixels(file, e.size, e.resize); } catch (err) { text($('label'), ''); text($('error'), 'Unprocessable Image: ' + (err.message.includes('MP') ? err.message : 'this browser cannot decode the file')); return; }
  const t1 = performance.now();
  const out = tf.tidy(() => e.model.predict(tf.tensor4d(pixels, [1, e.size, e.size, 3])));
  const data = await out.data(); out.dispose();
  const t2 = performance.now();
  const probs = data.length === 1 ? [1 - data[0], data[0]] : Array.from(data);
  const predictions = probs.map((score, i) => ({ label: e.classes[i], score })).sort((a, b) => b.score - a.score);
  lastMs.browser = t2 - t0;
  showResult(predictions, 'In your browser ' + ms(t2 - t0) + ' (decode and resize ' + ms(t1 - t0) + ', inference ' + ms(t2 - t1) + ', tfjs ' +
    tf.version.tfjs + ' ' + tf.getBackend() + ')' + (e.fresh ? ' · model loaded in ' + ms(e.loadMs) : '') + ' · model ' + e.version + ' · nothing uploaded');
  e.fresh = false;
}

async function classify(file) {
  lastFile = file;
  text($('error'), ''); text($('label'), 'Classifying…'); $('bars').replaceChildren(); text($('latency'), '');
  const img = $('preview'); img.src = URL.createObjectURL(file); img.style.display = 'block';
  try { await (mode === 'browser' ? classifyBrowser(file) : classifyApi(file)); }
  catch (e) { text($('label'), ''); text($('error'), (mode === 'browser' ? 'In-browser inference failed: ' : 'Request failed: ') + e.message); }
  $('result').dataset.mode = mode;
  $('result').dataset.done = String(Date.now());
}

// The toggle is offered only where this deployment serves the tfjs files.
fetch('browser/tf.min.js', { method: 'HEAD' }).then((r) => { if (r.ok) $('mode').hidden = false; }, () => {});
for (const radio of document.querySelectorAll('input[name=mode]')) {
  radio.addEventListener('change', () => { if (!radio.checked) return; mode = radio.value; if (lastFile) classify(lastFile); });
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
 * an injected script cannot run); scripts from this origin ('self': the tfjs files of in-browser
 * mode, functions/browser-assets.ts) and 'wasm-unsafe-eval' so tfjs can compile its WebAssembly;
 * fetches to this origin only (the API, the model files, the .wasm); previews from blob: URLs.
 * Nothing else: no eval, no workers, no other origin.
 */
const hash = (s: string) => `'sha256-${createHash('sha256').update(s, 'utf8').digest('base64')}'`;
export const PAGE_CSP =
  `default-src 'none'; script-src ${hash(PAGE_SCRIPT)} 'self' 'wasm-unsafe-eval'; style-src ${hash(PAGE_STYLE)}; img-src 'self' blob:; ` +
  "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

/** GET /: a small self-contained page to try the classifier, via the API or in the browser; serve it with PAGE_CSP. */
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
  <fieldset id="mode" hidden>
    <legend>Run the model</legend>
    <label><input type="radio" name="mode" value="api" checked> API (the photo is sent to the server)</label>
    <label><input type="radio" name="mode" value="browser"> in your browser (tfjs WASM; nothing is uploaded)</label>
  </fieldset>
  <img id="preview" alt="the photo">
  <div id="result" aria-live="polite">
    <div id="label" data-testid="label"></div>
    <div id="bars"></div>
    <p class="muted" id="latency"></p>
    <p class="muted" id="compare"></p>
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
