// One pass of the frozen layers over an image set, a chunk of images at a time, each layer's rows
// collected into a RowStore (memory or spill file, see row-store.ts). Chunks start at multiples
// of CHUNK_ALIGN rows, so the extractors see the same batches (and give the same bits) as in one
// call over the whole set.
import type { AugmentDraw } from './augment.js';
import type { RunCache } from './cache-budget.js';
import type { FeatureExtractor } from './features.js';
import type { ImageSet } from './image-set.js';
import { type RowStore, RowStoreBuilder } from './row-store.js';

/** A multiple of every extractor's batch (4 images per worker job, 16 or 32 in process). */
export const CHUNK_ALIGN = 32;
/** Pixels (float32 views on the way) plus outputs of one chunk, roughly. */
export const CHUNK_BYTES = 64 * 1024 ** 2;

/** Rows per chunk: all of them when everything is in memory, else about CHUNK_BYTES of work. */
export function chunkRows(images: ImageSet, bytesPerRowOut: number, allInMemory: boolean, chunkBytes = CHUNK_BYTES): number {
  if (allInMemory) return Math.max(1, images.length);
  const perRow = images.size * images.size * 3 * 5 + bytesPerRowOut;
  return Math.max(CHUNK_ALIGN, Math.floor(chunkBytes / perRow / CHUNK_ALIGN) * CHUNK_ALIGN);
}

export interface PassOptions {
  cache: RunCache;
  /** Names the spill files. */
  name: string;
  onProgress?: (done: number) => void;
  /** Bytes of one output row over all layers, if known (sizes the chunks). */
  rowBytes?: number;
  /** Layers kept in memory whatever the budget (pooled features). */
  memoryOnly?: readonly string[];
}

/** `layers` of every image of `images` (with `draws[i]` applied), one store per layer. */
export async function computeStores(
  extractor: FeatureExtractor,
  images: ImageSet,
  draws: readonly (AugmentDraw | null)[],
  layers: readonly string[],
  opts: PassOptions,
): Promise<RowStore[]> {
  const n = images.length;
  const builders = layers.map((l) => new RowStoreBuilder(opts.cache, `${opts.name}-${l}`, n, opts.memoryOnly?.includes(l)));
  // Everything in one call when the images are in memory and the outputs (when known) fit the budget.
  const inMemory = !images.onDisk && (opts.rowBytes === undefined || opts.rowBytes * n <= opts.cache.budget.free);
  const step = chunkRows(images, opts.rowBytes ?? 0, inMemory, opts.cache.chunkBytes);
  try {
    for (let s = 0; s < n; s += step) {
      const e = Math.min(n, s + step);
      const part = await images.read(s, e);
      const blocks = await extractor.computeLayers(part, draws.slice(s, e), layers, (done) => opts.onProgress?.(s + done));
      for (const [k, b] of blocks.entries()) builders[k].append(b);
    }
    return builders.map((b) => b.finish());
  } catch (e) {
    for (const b of builders) b.abort();
    throw e;
  }
}
