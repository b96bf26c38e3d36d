/** GET /: a small self-contained page (no external assets) to try the classifier. */
export function renderPage(): string {
  return `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>edgetune classifier</title>
<style>
  :root { font-family: system-ui, sans-serif; color: #1b1f24; background: #f6f7f9; }
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
</style>
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
<script>
const $ = (id) => document.getElementById(id);
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
    text($('label'), j.label + ' (' + pct(j.score) + ')');
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
</script>
</body>
</html>`;
}
