// Rewriting the report page after an export, without re-rendering its figures (no chart code loaded).
import { existsSync } from 'node:fs';
import { writeFile } from 'node:fs/promises';
import path from 'node:path';
import { readExportsFile } from '../../core/export/exports-file.js';
import type { Manifest } from '../../core/manifest.js';
import { type ReportAssets, reportHtml } from './html.js';

/** exports.json of the folder when it describes this model version (a stale or unreadable one is left out). */
export async function exportsOf(outDir: string, manifest: Manifest) {
  const ex = await readExportsFile(path.join(outDir, 'exports.json')).catch(() => undefined);
  return ex?.model.version === manifest.version ? ex : undefined;
}

/**
 * Rewrites only report/index.html (the figures stay) so it shows the folder's exports.json: after
 * `train --export` and `edgetune export`. Does nothing when the folder has no report.
 */
export async function refreshReportFormats(outDir: string, manifest: Manifest): Promise<boolean> {
  const dir = path.join(outDir, 'report');
  if (!existsSync(path.join(dir, 'index.html'))) return false;
  const has = (f: string) => (existsSync(path.join(dir, f)) ? f : undefined);
  const assets: ReportAssets = {
    accuracy: has('accuracy.svg'),
    loss: has('loss.svg'),
    confusion: has('confusion.svg') ?? '',
    augmentation: has('augmentation.png'),
    exports: await exportsOf(outDir, manifest),
  };
  await writeFile(path.join(dir, 'index.html'), reportHtml(manifest, assets));
  return true;
}
