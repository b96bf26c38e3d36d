import { access, copyFile, mkdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import type { TopLevelSpec } from 'vega-lite';
import type { Manifest } from '../../core/manifest.js';
import type { ReviewData } from '../post-training.js';
import { confusionSpec, curveSpec, reliabilitySpec } from './charts.js';
import { type ReportAssets, reportHtml } from './html.js';
import { exportsOf } from './refresh.js';
import { pngTextRenders, renderSvg, svgToPng } from './render.js';

type ChartName = 'accuracy' | 'loss' | 'confusion' | 'reliability';

export { confusionSpec, curveSpec, fineTuneStart } from './charts.js';
export { reportHtml } from './html.js';
export { refreshReportFormats } from './refresh.js';
export { pngTextRenders, renderSvg, svgToPng } from './render.js';

export interface ReportOptions {
  /** PNG of augmented samples (the lead's augmentation grid), copied into the report. */
  augmentationGrid?: string;
  /** The post-training review lists and the local folder their paths are relative to (thumbnails). */
  review?: { data: ReviewData; dataDir: string };
}

export interface ReportResult {
  dir: string;
  /** Files written, relative to `dir`. */
  files: string[];
  /** Problems worth telling the user about (the report is still written). */
  warnings: string[];
}

/**
 * Writes `<outDir>/report/`: accuracy and loss curves over both phases with the fine-tuning
 * marker, the confusion matrix (fine-tuned metrics if present, else frozen), each as SVG and PNG,
 * the augmentation grid if given, and `index.html` tying them together with the metrics.
 */
export async function writeReport(outDir: string, manifest: Manifest, opts: ReportOptions = {}): Promise<ReportResult> {
  if (opts.augmentationGrid) {
    await access(opts.augmentationGrid).catch((e: NodeJS.ErrnoException) => {
      throw new Error(`report: cannot read the augmentation grid ${opts.augmentationGrid}: ${e.code ?? e.message}`);
    });
  }
  const dir = path.join(outDir, 'report');
  await mkdir(dir, { recursive: true });
  const files: string[] = [];
  const warnings: string[] = [];
  if (!(await pngTextRenders())) {
    warnings.push(
      'no fonts found for SVG rasterisation: the PNG figures have no text (the SVGs are fine); install fonts, e.g. apt-get install fonts-dejavu-core',
    );
  }
  // Each chart's PNG is rasterised on sharp's threads while the next chart's SVG renders here.
  const chart = async (name: ChartName, svg: string) => {
    await Promise.all([
      writeFile(path.join(dir, `${name}.svg`), svg),
      svgToPng(svg).then((png) => writeFile(path.join(dir, `${name}.png`), png)),
    ]);
    return name;
  };
  const fine = manifest.metrics.fineTuned;
  const metrics = fine ?? manifest.metrics.frozen;
  const subtitle = `validation set, ${fine ? 'after fine-tuning' : 'base frozen'}: accuracy ${(100 * metrics.valAccuracy).toFixed(1)}%`;
  const specs: [ChartName, TopLevelSpec][] = [];
  if (manifest.history.length) {
    specs.push(['accuracy', curveSpec(manifest.history, 'accuracy')], ['loss', curveSpec(manifest.history, 'loss')]);
  }
  specs.push(['confusion', confusionSpec(manifest.classes, metrics.confusion, subtitle)]);
  if (manifest.calibration) specs.push(['reliability', reliabilitySpec(manifest.calibration)]);
  // The gallery's thumbnails are sharp's work too: they start before the charts render.
  const review = opts.review;
  const gallery = review ? import('./gallery.js').then((g) => g.writeGallery(dir, review.data, review.dataDir)) : undefined;
  gallery?.catch(() => {}); // awaited below
  const written: Promise<ChartName>[] = [];
  for (const [name, spec] of specs) written.push(chart(name, await renderSvg(spec)));
  const assets: ReportAssets = { confusion: '' };
  for (const name of await Promise.all(written)) {
    assets[name] = `${name}.svg`;
    files.push(`${name}.svg`, `${name}.png`);
  }

  if (gallery) {
    const g = await gallery;
    assets.gallery = g.html;
    files.push(...g.files);
  }

  if (opts.augmentationGrid) {
    assets.augmentation = 'augmentation.png';
    await copyFile(opts.augmentationGrid, path.join(dir, assets.augmentation));
    files.push(assets.augmentation);
  }

  assets.exports = await exportsOf(outDir, manifest);
  await writeFile(path.join(dir, 'index.html'), reportHtml(manifest, assets));
  files.push('index.html');
  return { dir, files, warnings };
}
