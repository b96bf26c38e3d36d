import * as vega from 'vega';
import { compile, type TopLevelSpec } from 'vega-lite';
import { sharp } from '../../core/sharp.js';

/** Renders a Vega-Lite spec to SVG headlessly (vega View with renderer 'none'; no canvas, no DOM). */
export async function renderSvg(spec: TopLevelSpec): Promise<string> {
  const view = new vega.View(vega.parse(compile(spec).spec), { renderer: 'none' });
  try {
    return await view.toSVG();
  } finally {
    view.finalize();
  }
}

/** Rasterises an SVG with sharp (librsvg) at `scale` x its size, for places that cannot show SVG. */
export async function svgToPng(svg: string, scale = 2): Promise<Buffer> {
  return (
    sharp(Buffer.from(svg), { density: 72 * scale })
      // zlib level 6 (sharp's default): level 9 took 85 ms a chart against 25 ms, for a few KiB less.
      .png({ compressionLevel: 6 })
      .toBuffer()
  );
}

let textProbe: Promise<boolean> | undefined;

async function rasteriseText(text: string): Promise<Buffer> {
  const svg =
    '<svg xmlns="http://www.w3.org/2000/svg" width="120" height="40"><rect width="120" height="40" fill="white"/>' +
    `<text x="8" y="30" font-size="28" font-family="DejaVu Sans, Liberation Sans, sans-serif" fill="black">${text}</text></svg>`;
  return sharp(Buffer.from(svg)).greyscale().raw().toBuffer();
}

/**
 * Whether librsvg finds a font. Without one (a bare machine with no fonts installed) PNG copies
 * show blank or identical "tofu" boxes for every glyph, while the SVGs still show fine in a
 * browser; so two different strings must rasterise differently. Checked once per process.
 */
export function pngTextRenders(): Promise<boolean> {
  textProbe ??= (async () => {
    const [a, b] = await Promise.all([rasteriseText('Ag8'), rasteriseText('WXo')]);
    return !a.equals(b) && a.some((v) => v < 128);
  })();
  return textProbe;
}
