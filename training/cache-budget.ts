// One memory budget for everything of a run that grows with the dataset (decoded images, pooled
// features, boundary views). What does not fit goes to disk (training/spill.ts).
import { readFileSync } from 'node:fs';
import os from 'node:os';

const GiB = 1024 ** 3;
const MiB = 1024 ** 2;

/**
 * The default budget: 256 MiB, a quarter of the memory limit when that is under 1 GiB. Enough for
 * the alpaca set at 224 with alpha 1.0 to stay wholly in memory (images, validation views and two
 * epochs of float16 views: ~185 MB), small enough that a run's peak RSS hardly grows past ~1,000
 * photos (with 1 GiB it grew until the budget filled, at about 5,000 photos at 160).
 */
export const DEFAULT_CACHE_BUDGET = 256 * MiB;

function readLimit(file: string): number | undefined {
  try {
    const v = readFileSync(file, 'utf8').trim();
    if (v === 'max') return undefined;
    const n = Number(v);
    // cgroup v1 reports "no limit" as a huge page-aligned number.
    return Number.isFinite(n) && n > 0 && n < 2 ** 60 ? n : undefined;
  } catch {
    return undefined;
  }
}

/**
 * The memory this process may use: the container's limit (process.constrainedMemory, else the
 * cgroup v2 / v1 files), never more than the machine's RAM. Not os.freemem(), which reports the
 * host inside a container.
 */
export function memoryLimitBytes(
  sources: { constrained?: () => number | undefined; files?: readonly string[]; total?: () => number } = {},
): number {
  const constrained = (sources.constrained ?? (() => (process as { constrainedMemory?: () => number }).constrainedMemory?.()))();
  const files = sources.files ?? ['/sys/fs/cgroup/memory.max', '/sys/fs/cgroup/memory/memory.limit_in_bytes'];
  const limits = [(sources.total ?? os.totalmem)()];
  // Node reports "no limit" as 2^64 (or 0 on platforms without cgroups).
  if (constrained && constrained > 0 && constrained < 2 ** 60) limits.push(constrained);
  for (const f of files) {
    const l = readLimit(f);
    if (l) limits.push(l);
  }
  return Math.min(...limits);
}

export function defaultCacheBudget(limit = memoryLimitBytes()): number {
  return Math.floor(Math.min(DEFAULT_CACHE_BUDGET, limit / 4));
}

/** "512M", "1.5G", "800MiB", "0" or a byte count. Binary units (K = 1024). */
export function parseBytes(text: string): number {
  const m = /^\s*(\d+(?:\.\d+)?)\s*([kmgt]?)(?:i?b)?\s*$/i.exec(text);
  if (!m) throw new Error(`not a size: '${text}' (e.g. 512M, 2G, 0)`);
  const scale = { '': 1, k: 1024, m: MiB, g: GiB, t: 1024 * GiB }[m[2].toLowerCase() as '' | 'k' | 'm' | 'g' | 't'];
  return Math.floor(Number(m[1]) * scale);
}

export const formatMiB = (bytes: number) => `${(bytes / MiB).toFixed(bytes < 10 * MiB ? 1 : 0)} MiB`;

/** Bytes handed out against a fixed total; a caller that gets no room uses the disk instead. */
export class CacheBudget {
  private used = 0;
  private peakUsed = 0;

  constructor(readonly total: number) {
    if (!(total >= 0)) throw new Error(`cache budget must be >= 0 bytes, got ${total}`);
  }

  get inUse(): number {
    return this.used;
  }

  get peak(): number {
    return this.peakUsed;
  }

  get free(): number {
    return Math.max(0, this.total - this.used);
  }

  /** Takes `bytes` if they fit; false (nothing taken) if not. */
  tryReserve(bytes: number): boolean {
    if (this.used + bytes > this.total) return false;
    this.take(bytes);
    return true;
  }

  /** Takes `bytes` whether or not they fit (what has no disk form, e.g. pooled features). */
  take(bytes: number): void {
    this.used += bytes;
    this.peakUsed = Math.max(this.peakUsed, this.used);
  }

  release(bytes: number): void {
    this.used = Math.max(0, this.used - bytes);
  }
}

/** What a run's caches draw on: the memory budget, and the disk for the rest. */
export interface RunCache {
  budget: CacheBudget;
  spill: import('./spill.js').SpillArea;
  /** Work per chunk of a pass that does not fit in memory (default view-cache.ts CHUNK_BYTES; tests make it small). */
  chunkBytes?: number;
}
