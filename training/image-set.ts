// The decoded images of one side of the split: kept in memory when the cache budget has room
// for all of them (a few hundred photos), else written once, in order, to a spill file of raw
// RGB bytes and read back a range at a time. Never re-decoded.
import type { RunCache } from './cache-budget.js';
import type { DatasetFile, DecodedImage } from './dataset.js';
import type { RowFile } from './spill.js';

export interface ImageSet {
  readonly length: number;
  /** The images' files, in order. */
  readonly files: readonly DatasetFile[];
  readonly labels: Int32Array;
  /** Width = height of every image. */
  readonly size: number;
  readonly onDisk: boolean;
  /** Images [start, end). */
  read(start: number, end: number): Promise<DecodedImage[]>;
  dispose(): void;
}

/** A set over images already in memory (not counted against a budget). */
export function memoryImageSet(images: readonly DecodedImage[], size = images[0]?.width ?? 0, onDispose: () => void = () => {}): ImageSet {
  let held: readonly DecodedImage[] | undefined = images;
  return {
    length: images.length,
    files: images.map((i) => i.file),
    labels: Int32Array.from(images.map((i) => i.file.label)),
    size,
    onDisk: false,
    async read(start, end) {
      if (!held) throw new Error('image set disposed');
      return held.slice(start, end);
    },
    dispose() {
      if (!held) return;
      held = undefined;
      onDispose();
    },
  };
}

/** Images appended in order; memory if the budget has room for `capacity` of them, else a spill file. */
export class ImageSetBuilder {
  private readonly images: DecodedImage[] = [];
  private readonly files: DatasetFile[] = [];
  private readonly file: RowFile | undefined;
  private readonly reserved: number;

  constructor(
    private readonly cache: RunCache,
    name: string,
    readonly size: number,
    capacity: number,
  ) {
    const bytes = capacity * size * size * 3;
    if (cache.budget.tryReserve(bytes)) {
      this.reserved = bytes;
    } else {
      this.reserved = 0;
      this.file = cache.spill.create(name, size * size * 3);
    }
  }

  append(img: DecodedImage): void {
    if (img.width !== this.size || img.height !== this.size)
      throw new Error(`image ${img.file.relPath} is ${img.width}x${img.height}, not ${this.size}`);
    this.files.push(img.file);
    if (this.file) this.file.append(img.data);
    else this.images.push(img);
  }

  finish(): ImageSet {
    const release = () => this.cache.budget.release(this.reserved);
    if (!this.file) return memoryImageSet(this.images, this.size, release);
    const file = this.file;
    const files = this.files;
    const px = this.size * this.size * 3;
    const size = this.size;
    let open = true;
    return {
      length: files.length,
      files,
      labels: Int32Array.from(files.map((f) => f.label)),
      size,
      onDisk: true,
      async read(start, end) {
        if (!open) throw new Error('image set disposed');
        const s = Math.max(0, start);
        const e = Math.min(files.length, end);
        if (e <= s) return [];
        const all = new Uint8Array((e - s) * px);
        file.readRows(s, e - s, all);
        return Array.from({ length: e - s }, (_, i) => ({
          data: all.subarray(i * px, (i + 1) * px),
          width: size,
          height: size,
          file: files[s + i],
        }));
      },
      dispose() {
        if (!open) return;
        open = false;
        file.remove();
      },
    };
  }
}
