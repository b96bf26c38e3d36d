import { HEAD } from '../core/classifier.js';
import type { RgbImage } from '../core/image.js';
import type { AugmentDraw } from './augment.js';
import { type FeatureBlock, type FeatureExtractor, LayerExtractor } from './features.js';
import type { ForwardStats } from './manifest-draft.js';

/** Counts views and seconds of the frozen forward pass, for the manifest's timings. */
export class TimedExtractor extends LayerExtractor {
  constructor(
    private readonly ex: FeatureExtractor,
    private readonly stats: ForwardStats,
  ) {
    super();
  }

  get description(): string {
    return this.ex.description;
  }

  async computeLayers(
    images: readonly RgbImage[],
    draws: readonly (AugmentDraw | null)[],
    layers: readonly string[],
    onProgress?: (done: number) => void,
  ): Promise<FeatureBlock[]> {
    const t = performance.now();
    const out = await this.ex.computeLayers(images, draws, layers, onProgress);
    // A pass that also pools ran the whole base: it counts as a pooled pass.
    const s = this.stats[layers.includes(HEAD.pool) ? 'pooled' : 'boundary'];
    s.views += images.length;
    s.seconds += (performance.now() - t) / 1000;
    return out;
  }

  close(): Promise<void> {
    return this.ex.close();
  }
}
