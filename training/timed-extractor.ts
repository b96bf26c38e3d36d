import { HEAD } from '../core/classifier.js';
import type { RgbImage } from '../core/image.js';
import type { AugmentDraw } from './augment.js';
import { type FeatureBlock, type FeatureExtractor, LayerExtractor } from './features.js';
import type { ForwardStats } from './manifest-draft.js';

/** Counts views and seconds of the frozen forward pass, for the manifest's timings. */
export class TimedExtractor extends LayerExtractor {
  private readonly active = { pooled: 0, boundary: 0 };
  private readonly since = { pooled: 0, boundary: 0 };

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
    // A pass that also pools ran the whole base: it counts as a pooled pass.
    const kind = layers.includes(HEAD.pool) ? 'pooled' : 'boundary';
    // Calls of a kind may overlap (chunks in flight): count the time any of them runs, once.
    if (this.active[kind]++ === 0) this.since[kind] = performance.now();
    try {
      const out = await this.ex.computeLayers(images, draws, layers, onProgress);
      this.stats[kind].views += images.length;
      return out;
    } finally {
      if (--this.active[kind] === 0) this.stats[kind].seconds += (performance.now() - this.since[kind]) / 1000;
    }
  }

  close(): Promise<void> {
    return this.ex.close();
  }
}
