import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { unzipSync } from 'fflate';
import { sha256Hex } from './cache.js';
import { readKerasH5Weights } from './h5-source.js';
import type { RawWeights } from './types.js';

/** saving_lib's names inside a `.keras` zip. */
const WEIGHTS_FILE = 'model.weights.h5';
const CONFIG_FILE = 'config.json';
/** Far above any MobileNetV2 (alpha 1.4 with the top is ~25 MB): a zip bomb is refused before inflating. */
export const MAX_ARCHIVE_ENTRY_BYTES = 512 * 1024 * 1024;

interface KerasConfig {
  class_name?: string;
  config?: { name?: string; layers?: KerasConfig[] };
}

function describeConfig(c: KerasConfig, depth = 0): string[] {
  const layers = c.config?.layers ?? [];
  const nested = layers.filter((l) => Array.isArray(l.config?.layers));
  const out = [`${'  '.repeat(depth)}${c.class_name ?? '?'} ${c.config?.name ?? '?'} (${layers.length} layers)`];
  for (const n of nested) out.push(...describeConfig(n, depth + 1));
  return out;
}

/** A Keras 3 `.keras` archive (zip: metadata.json, config.json, model.weights.h5): its weights as stored. */
export async function readKerasArchive(file: string, source = file): Promise<RawWeights> {
  const abs = path.resolve(file);
  let bytes: Buffer;
  try {
    bytes = await readFile(abs);
  } catch (e) {
    throw new Error(`cannot read Keras archive ${abs}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
  }
  let entries: Record<string, Uint8Array>;
  const tooBig: string[] = [];
  try {
    entries = unzipSync(bytes, {
      filter: (f) => {
        if (f.name !== WEIGHTS_FILE && f.name !== CONFIG_FILE) return false;
        if (f.originalSize > MAX_ARCHIVE_ENTRY_BYTES) {
          tooBig.push(`${f.name} (${f.originalSize} bytes)`);
          return false;
        }
        return true;
      },
    });
  } catch (e) {
    throw new Error(`${abs} is not a readable .keras (zip) archive (truncated or damaged?): ${(e as Error).message}`);
  }
  if (tooBig.length) throw new Error(`${abs}: refusing entries over ${MAX_ARCHIVE_ENTRY_BYTES} bytes: ${tooBig.join(', ')}`);
  const weights = entries[WEIGHTS_FILE];
  if (!weights) throw new Error(`${abs} has no ${WEIGHTS_FILE}: is it a Keras 3 .keras archive saved with the h5 weights format?`);
  const notes: string[] = [];
  if (entries[CONFIG_FILE]) {
    try {
      notes.push(`model config: ${describeConfig(JSON.parse(Buffer.from(entries[CONFIG_FILE]).toString('utf8'))).join('; ')}`);
    } catch (e) {
      throw new Error(`${abs}: ${CONFIG_FILE} is not JSON: ${(e as Error).message}`);
    }
  }
  // h5wasm's Node build reads files from disk only.
  const dir = await mkdtemp(path.join(os.tmpdir(), 'edgetune-keras-'));
  try {
    const h5 = path.join(dir, WEIGHTS_FILE);
    await writeFile(h5, weights);
    const r = await readKerasH5Weights(h5, source);
    if (r.format !== 'keras3-weights') notes.push(`its ${WEIGHTS_FILE} has the ${r.format} layout`);
    return { ...r, kind: 'keras-archive', format: 'keras-archive', sha256: sha256Hex(bytes), notes: [...notes, ...r.notes] };
  } catch (e) {
    throw new Error(`${abs} (${WEIGHTS_FILE} inside): ${(e as Error).message.replaceAll(dir, '.')}`);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}
