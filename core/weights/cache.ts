import { createHash } from 'node:crypto';
import { mkdir, rename, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { edgetuneConfig } from '../config.js';

export function sha256Hex(...chunks: Uint8Array[]): string {
  const h = createHash('sha256');
  for (const c of chunks) h.update(c);
  return h.digest('hex');
}

/** edgetune's download cache: EDGETUNE_CACHE_DIR, else $XDG_CACHE_HOME/edgetune, else ~/.cache/edgetune. */
export function cacheDir(): string {
  const configured = edgetuneConfig().EDGETUNE_CACHE_DIR;
  if (configured) return path.resolve(configured);
  const base = process.env.XDG_CACHE_HOME || path.join(os.homedir(), '.cache');
  return path.join(base, 'edgetune');
}

/** Where Keras caches downloaded application weights: $KERAS_HOME/models, else ~/.keras/models. */
export function kerasModelsDir(): string {
  return path.join(process.env.KERAS_HOME ? path.resolve(process.env.KERAS_HOME) : path.join(os.homedir(), '.keras'), 'models');
}

export class DownloadError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'DownloadError';
  }
}

/** GET `url` as bytes; network failures and non-2xx answers become a DownloadError naming the URL. */
export async function fetchBytes(url: string, timeoutMs = 120_000): Promise<Uint8Array> {
  let res: Response;
  try {
    res = await fetch(url, { signal: AbortSignal.timeout(timeoutMs) });
  } catch (e) {
    const err = e as Error & { cause?: { code?: string; message?: string } };
    const why = err.cause?.code ?? err.cause?.message ?? err.message;
    throw new DownloadError(`cannot download ${url}: ${why}`);
  }
  if (!res.ok) throw new DownloadError(`cannot download ${url}: HTTP ${res.status} ${res.statusText}`);
  return new Uint8Array(await res.arrayBuffer());
}

/** Writes through a temporary sibling and a rename, so a reader never sees a half-written file. */
export async function writeFileAtomic(file: string, bytes: Uint8Array): Promise<void> {
  await mkdir(path.dirname(file), { recursive: true });
  const tmp = `${file}.tmp-${process.pid}-${Date.now()}`;
  try {
    await writeFile(tmp, bytes);
    await rename(tmp, file);
  } catch (e) {
    await rm(tmp, { force: true });
    throw e;
  }
}
