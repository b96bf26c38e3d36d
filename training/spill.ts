// The disk side of the cache budget: one temporary folder per run holding files written
// sequentially (appended) and read back by row; removed when the run ends, also when it fails or
// the process is interrupted (SIGINT / SIGTERM) or exits.
import { closeSync, mkdtempSync, openSync, readSync, rmSync, writeSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';

const live = new Set<string>();
let hooked = false;

function removeAll(): void {
  for (const dir of live) rmSync(dir, { recursive: true, force: true });
  live.clear();
}

function onSignal(signal: NodeJS.Signals): void {
  removeAll();
  // Someone else handles the signal (e.g. a server's graceful stop): let them.
  if (process.listenerCount(signal) > 1) return;
  process.removeListener(signal, onSignal);
  process.kill(process.pid, signal);
}

function hookExit(): void {
  if (hooked) return;
  hooked = true;
  process.on('exit', removeAll);
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
}

/** The folders of the spill areas still open in this process (for tests). */
export const openSpillDirs = (): string[] => [...live];

/** A run's spill folder, created on first use under `parent` (default: the OS temp folder). */
export class SpillArea {
  private dir: string | undefined;
  private files = 0;
  private written = 0;
  private peakBytes = 0;
  private current = 0;

  constructor(private readonly parent = os.tmpdir()) {}

  /** Bytes on disk now / at most so far. */
  get bytes(): number {
    return this.current;
  }

  get peak(): number {
    return this.peakBytes;
  }

  get totalWritten(): number {
    return this.written;
  }

  get folder(): string | undefined {
    return this.dir;
  }

  /** A new file open for appending; `bytesPerRow` fixes the row layout for reads. */
  create(name: string, bytesPerRow: number): RowFile {
    if (!this.dir) {
      this.dir = mkdtempSync(path.join(this.parent, 'edgetune-cache-'));
      live.add(this.dir);
      hookExit();
    }
    const file = path.join(this.dir, `${String(this.files++).padStart(4, '0')}-${name}.bin`);
    return new RowFile(file, bytesPerRow, (n) => {
      this.written += Math.max(0, n);
      this.current += n;
      this.peakBytes = Math.max(this.peakBytes, this.current);
    });
  }

  /** Removes the folder and everything in it. */
  remove(): void {
    if (!this.dir) return;
    rmSync(this.dir, { recursive: true, force: true });
    live.delete(this.dir);
    this.dir = undefined;
    this.current = 0;
  }
}

/** Fixed-size rows appended in order, read back by row index (positioned reads). */
export class RowFile {
  private fd: number | undefined;
  private size = 0;

  constructor(
    readonly file: string,
    readonly bytesPerRow: number,
    private readonly account: (delta: number) => void,
  ) {
    this.fd = openSync(file, 'w+');
  }

  get rows(): number {
    return this.size / this.bytesPerRow;
  }

  private handle(): number {
    if (this.fd === undefined) throw new Error(`cache file ${this.file} is closed`);
    return this.fd;
  }

  append(bytes: Uint8Array): void {
    if (bytes.byteLength % this.bytesPerRow)
      throw new Error(`cache file: ${bytes.byteLength} bytes is not whole rows of ${this.bytesPerRow}`);
    let off = 0;
    while (off < bytes.byteLength) off += writeSync(this.handle(), bytes, off, bytes.byteLength - off, this.size + off);
    this.size += bytes.byteLength;
    this.account(bytes.byteLength);
  }

  /** Row `row` into `into` (bytesPerRow bytes). */
  readRow(row: number, into: Uint8Array): void {
    this.readRows(row, 1, into);
  }

  /** `count` consecutive rows from `row` into `into`. */
  readRows(row: number, count: number, into: Uint8Array): void {
    const want = count * this.bytesPerRow;
    if (row < 0 || (row + count) * this.bytesPerRow > this.size)
      throw new Error(`cache file: rows ${row}..${row + count} out of ${this.rows}`);
    let off = 0;
    while (off < want) {
      const n = readSync(this.handle(), into, off, want - off, row * this.bytesPerRow + off);
      if (n === 0) throw new Error(`cache file ${this.file}: short read`);
      off += n;
    }
  }

  /** Closes and deletes the file. */
  remove(): void {
    if (this.fd === undefined) return;
    closeSync(this.fd);
    this.fd = undefined;
    rmSync(this.file, { force: true });
    this.account(-this.size);
  }
}
