// The report's "seeing the data" sections: misclassified validation photos, the highest-loss training
// photos (suspected mislabels) and near-duplicates across classes or across the split, each with a
// thumbnail decoded from the photo's file (never from a held set of decoded images).
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { sharp } from '../../core/sharp.js';
import type { ReviewData, ReviewPhoto } from '../post-training.js';
import { esc } from './html.js';

const THUMB = 96;
const SHOW = 24;

/** Writes the thumbnails under `<reportDir>/gallery/` and returns the HTML sections plus the files written. */
export async function writeGallery(reportDir: string, review: ReviewData, dataDir: string): Promise<{ html: string; files: string[] }> {
  const dir = path.join(reportDir, 'gallery');
  await mkdir(dir, { recursive: true });
  const files: string[] = [];
  // A photo's name is taken before its thumbnail is made: the cards are built concurrently.
  const thumbs = new Map<string, Promise<string | undefined>>();
  const thumb = (rel: string): Promise<string | undefined> => {
    const known = thumbs.get(rel);
    if (known) return known;
    const name = `gallery/${thumbs.size}.jpg`;
    const made = (async () => {
      try {
        const bytes = await readFile(path.join(dataDir, rel));
        await writeFile(
          path.join(reportDir, name),
          await sharp(bytes).rotate().resize(THUMB, THUMB, { fit: 'cover' }).jpeg({ quality: 80 }).toBuffer(),
        );
        files.push(name);
        return name;
      } catch {
        return undefined; // unreadable now: the card says so instead of an image
      }
    })();
    thumbs.set(rel, made);
    return made;
  };
  const img = (src: string | undefined, alt: string) =>
    src ? `<img src="${esc(src)}" alt="${esc(alt)}" width="${THUMB}" height="${THUMB}">` : '<div class="muted">(no thumbnail)</div>';
  const card = async (p: ReviewPhoto, extra: string) =>
    `<figure class="card">${img(await thumb(p.path), p.path)}<figcaption><code>${esc(p.path)}</code><br>true <b>${esc(p.label)}</b>, predicted <b>${esc(p.predicted)}</b> ${(100 * p.probability).toFixed(1)}%${extra}</figcaption></figure>`;

  const mis = review.misclassified.slice(0, SHOW);
  const loss = review.highestLoss.slice(0, SHOW);
  const dups = review.duplicates.slice(0, SHOW);
  const misCards = (await Promise.all(mis.map((p) => card(p, '')))).join('');
  const lossCards = (await Promise.all(loss.map((p) => card(p, `<br>loss ${p.loss.toFixed(2)}`)))).join('');
  const dupRows: string[] = [];
  for (const d of dups) {
    dupRows.push(
      `<figure class="card pair">${img(await thumb(d.a), d.a)}${img(await thumb(d.b), d.b)}<figcaption><code>${esc(d.a)}</code> (${esc(d.labelA)}) · <code>${esc(d.b)}</code> (${esc(d.labelB)})<br>similarity ${d.similarity.toFixed(3)}, ${d.kind === 'across-classes' ? 'different classes' : 'one in training, one in validation'}</figcaption></figure>`,
    );
  }
  const none = (what: string) => `<p class="muted">${what}</p>`;
  const html = `<style>.gallery{display:flex;flex-wrap:wrap;gap:10px}.card{margin:0;width:${THUMB * 2 + 16}px;background:white;border:1px solid var(--line);border-radius:8px;padding:6px;font-size:12px}.card img{display:inline-block;margin-right:4px;border-radius:4px}</style>
<h2>Misclassified validation photos</h2>
${mis.length ? `<p class="muted">${review.misclassified.length} of them, worst first${review.misclassified.length > SHOW ? ` (first ${SHOW} shown)` : ''}; calibrated probability of the predicted class.</p><div class="gallery">${misCards}</div>` : none('None: every validation photo is classified right.')}
<h2>Highest-loss training photos (suspected mislabels)</h2>
<p class="muted">Training photos the trained model finds least like their label (cross-entropy of the true label, un-augmented, after training).</p>
<div class="gallery">${lossCards}</div>
<h2>Near-duplicates</h2>
<p class="muted">${esc(review.duplicateSearch)}.</p>
${dups.length ? `<div class="gallery">${dupRows.join('')}</div>` : none('None found.')}
<p class="muted"><code>edgetune review &lt;model&gt; --data &lt;folder&gt; --out review.csv</code> lists every photo with these findings as a label CSV to correct and feed back with <code>--labels</code>.</p>`;
  files.sort((a, b) => Number.parseInt(a.slice(8), 10) - Number.parseInt(b.slice(8), 10));
  return { html, files };
}
