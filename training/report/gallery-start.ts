import path from 'node:path';
import type { ReviewData } from '../post-training.js';

export type Gallery = { html: string; files: string[] };

/**
 * Starts writing the review gallery into `<outDir>/report/gallery/` (thumbnails on sharp's threads),
 * so it runs alongside the export; a failure surfaces where writeReport awaits it. A light module:
 * the job imports it before the report's chart code is loaded.
 */
export function startGallery(outDir: string, review: ReviewData, dataDir: string): Promise<Gallery> {
  const p = import('./gallery.js').then((g) => g.writeGallery(path.join(outDir, 'report'), review, dataDir));
  p.catch(() => {}); // awaited by writeReport
  return p;
}
