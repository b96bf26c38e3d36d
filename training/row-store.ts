// Rows of activations (pooled features or boundary views) of one pass over a set of images: in
// memory when the budget has room for all of them, else in a spill file. Either way `gather`
// returns the same float32 values bit for bit (float16 rows are stored as their bits).
import type { RunCache } from './cache-budget.js';
import type { FeatureBlock } from './features.js';
import type { RowFile } from './spill.js';
import { fromFloat16 } from './workers/boundary-float16.js';

export interface RowStore {
  readonly shape: number[];
  readonly rows: number;
  readonly dim: number;
  readonly onDisk: boolean;
  /** Rows `idx` as one float32 batch. */
  gather(idx: readonly number[]): Float32Array;
  /** All rows as one float32 array: the stored array itself for float32 rows in memory. */
  float32(): Float32Array;
  /** Releases the memory / deletes the file. */
  dispose(): void;
}

const dimOf = (shape: readonly number[]) => shape.reduce((a, b) => a * b, 1);

/** A whole block in memory (not counted against any budget). */
export function memoryStore(block: FeatureBlock, onDispose: () => void = () => {}): RowStore {
  const dim = dimOf(block.shape);
  let data: FeatureBlock['data'] | undefined = block.data;
  return {
    shape: block.shape,
    rows: block.rows,
    dim,
    onDisk: false,
    gather(idx) {
      if (!data) throw new Error('row store disposed');
      const out = new Float32Array(idx.length * dim);
      for (const [r, k] of idx.entries()) {
        const row = data.subarray(k * dim, (k + 1) * dim);
        if (row instanceof Float32Array) out.set(row, r * dim);
        else fromFloat16(row, out.subarray(r * dim, (r + 1) * dim));
      }
      return out;
    },
    float32() {
      if (!data) throw new Error('row store disposed');
      return data instanceof Float32Array ? data : this.gather(Array.from({ length: block.rows }, (_, i) => i));
    },
    dispose() {
      if (!data) return;
      data = undefined;
      onDispose();
    },
  };
}

function diskStore(file: RowFile, shape: number[], rows: number, float16: boolean): RowStore {
  const dim = dimOf(shape);
  const bytes = new Uint8Array(file.bytesPerRow);
  const f16 = new Uint16Array(bytes.buffer);
  const f32 = new Float32Array(bytes.buffer);
  let open = true;
  return {
    shape,
    rows,
    dim,
    onDisk: true,
    gather(idx) {
      if (!open) throw new Error('row store disposed');
      const out = new Float32Array(idx.length * dim);
      for (const [r, k] of idx.entries()) {
        file.readRow(k, bytes);
        if (float16) fromFloat16(f16, out.subarray(r * dim, (r + 1) * dim));
        else out.set(f32, r * dim);
      }
      return out;
    },
    float32() {
      return this.gather(Array.from({ length: rows }, (_, i) => i));
    },
    dispose() {
      if (!open) return;
      open = false;
      file.remove();
    },
  };
}

/**
 * Collects a pass's blocks (in row order) into one store. The first block decides: memory if the
 * budget has room for all `totalRows`, else a spill file the blocks are appended to.
 */
export class RowStoreBuilder {
  private mem: FeatureBlock | undefined;
  private file: RowFile | undefined;
  private reserved = 0;
  private filled = 0;
  private shape: number[] = [];
  private float16 = false;

  constructor(
    private readonly cache: RunCache,
    private readonly name: string,
    private readonly totalRows: number,
    /** Always in memory, counted against the budget even past it (pooled features: ~5 KB a row). */
    private readonly memoryOnly = false,
  ) {}

  append(block: FeatureBlock): void {
    if (this.filled === 0 && !this.mem && !this.file) this.start(block);
    if (block.rows === 0) return;
    if (this.filled + block.rows > this.totalRows) throw new Error(`${this.name}: more rows than announced (${this.totalRows})`);
    if (this.file) {
      this.file.append(new Uint8Array(block.data.buffer, block.data.byteOffset, block.data.byteLength));
    } else if (this.mem && this.mem.data !== block.data) {
      this.mem.data.set(block.data, this.filled * dimOf(this.shape));
    }
    this.filled += block.rows;
  }

  private start(block: FeatureBlock): void {
    this.shape = block.shape;
    this.float16 = block.data instanceof Uint16Array;
    const bpe = block.data.BYTES_PER_ELEMENT;
    const bytes = this.totalRows * dimOf(block.shape) * bpe;
    if (this.memoryOnly) this.cache.budget.take(bytes);
    if (this.memoryOnly || this.cache.budget.tryReserve(bytes)) {
      this.reserved = bytes;
      // One block of everything (the small-dataset case) is kept as is, without a copy.
      const data =
        block.rows === this.totalRows
          ? block.data
          : this.float16
            ? new Uint16Array(this.totalRows * dimOf(block.shape))
            : new Float32Array(this.totalRows * dimOf(block.shape));
      this.mem = { data, shape: block.shape, rows: this.totalRows };
    } else {
      this.file = this.cache.spill.create(this.name, dimOf(block.shape) * bpe);
    }
  }

  finish(): RowStore {
    if (this.filled !== this.totalRows) throw new Error(`${this.name}: ${this.filled} rows of ${this.totalRows}`);
    if (this.file) return diskStore(this.file, this.shape, this.totalRows, this.float16);
    if (!this.mem) throw new Error(`${this.name}: no rows`);
    const reserved = this.reserved;
    return memoryStore(this.mem, () => this.cache.budget.release(reserved));
  }

  /** Drops what was collected (a pass that failed). */
  abort(): void {
    this.file?.remove();
    this.file = undefined;
    if (this.mem) this.cache.budget.release(this.reserved);
    this.mem = undefined;
  }
}
