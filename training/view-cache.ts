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

/** Rows per chunk: all of them for a small pass, else about `chunkBytes` of work. */
export function chunkRows(images: ImageSet, bytesPerRowOut: number, chunkBytes = CHUNK_BYTES): number {
  const perRow = images.size * images.size * 3 * 5 + bytesPerRowOut;
  // A small pass (the alpaca set) runs as one call, as before chunking existed.
  if (!images.onDisk && images.length * perRow <= SINGLE_CALL_CHUNKS * chunkBytes) return Math.max(1, images.length);
  return Math.max(CHUNK_ALIGN, Math.floor(chunkBytes / perRow / CHUNK_ALIGN) * CHUNK_ALIGN);
}

/** A pass over images in memory whose work is at most this many chunks runs as one call. */
export const SINGLE_CALL_CHUNKS = 4;

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

/**
 * `layers` of every image of `images` (with `draws[i]` applied), one store per layer. Two chunks
 * are in flight at a time, so the workers never wait between chunks; their rows are appended in order.
 */
export async function computeStores(
  extractor: FeatureExtractor,
  images: ImageSet,
  draws: readonly (AugmentDraw | null)[],
  layers: readonly string[],
  opts: PassOptions,
): Promise<RowStore[]> {
  const n = images.length;
  const builders = layers.map((l) => new RowStoreBuilder(opts.cache, `${opts.name}-${l}`, n, opts.memoryOnly?.includes(l)));
  const step = chunkRows(images, opts.rowBytes ?? 0, opts.cache.chunkBytes);
  const done = new Map<number, number>();
  let reported = 0;
  const progress = (s: number, d: number) => {
    done.set(s, d);
    const total = [...done.values()].reduce((a, b) => a + b, 0);
    if (total <= reported) return;
    reported = total;
    opts.onProgress?.(total);
  };
  const chunk = async (s: number) => {
    const e = Math.min(n, s + step);
    const part = await images.read(s, e);
    return extractor.computeLayers(part, draws.slice(s, e), layers, (d) => progress(s, d));
  };
  let ahead: Promise<Awaited<ReturnType<typeof chunk>>> | undefined;
  try {
    let current = n > 0 ? chunk(0) : undefined;
    for (let s = 0; s < n; s += step) {
      ahead = s + step < n ? chunk(s + step) : undefined;
      ahead?.catch(() => {}); // awaited next round; a failure of this round wins
      const blocks = await (current as Promise<Awaited<ReturnType<typeof chunk>>>);
      for (const [k, b] of blocks.entries()) builders[k].append(b);
      current = ahead;
    }
    return builders.map((b) => b.finish());
  } catch (e) {
    await ahead?.catch(() => {});
    for (const b of builders) b.abort();
    throw e;
  }
}
