import { existsSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { io } from '@tensorflow/tfjs';
import { z } from 'zod';
import { tf } from '../tf.js';
import { cacheDir, fetchBytes, sha256Hex, writeFileAtomic } from './cache.js';
import { layersFromKeyed, type RawWeights, type WeightArray, weightKey } from './types.js';

const ModelJsonSchema = z
  .object({
    weightsManifest: z
      .array(
        z.object({
          paths: z.array(z.string().min(1)),
          weights: z.array(
            z
              .object({
                name: z.string(),
                shape: z.array(z.number().int().nonnegative()),
                dtype: z.string(),
              })
              .passthrough(),
          ),
        }),
      )
      .min(1),
  })
  .passthrough();

/** Reads the file named `rel` (a path from model.json's weightsManifest) next to model.json. */
type Reader = (rel: string) => Promise<Uint8Array>;

function safeRelative(rel: string, where: string): string {
  const norm = path.posix.normalize(rel);
  if (norm.startsWith('../') || norm === '..' || path.posix.isAbsolute(norm)) {
    throw new Error(`weights path "${rel}" in ${where} points outside the model folder`);
  }
  return norm;
}

/** Decodes tfjs weight shards (float32 or quantized) into `<layer>/<weight>` float32 arrays. */
export function decodeTfjsWeights(data: Uint8Array, specs: io.WeightsManifestEntry[]): Map<string, WeightArray> {
  const buffer = data.buffer.slice(data.byteOffset, data.byteOffset + data.byteLength) as ArrayBuffer;
  const named = tf.io.decodeWeights(buffer, specs);
  const out = new Map<string, WeightArray>();
  try {
    for (const spec of specs) {
      const t = named[spec.name];
      const values = t.dtype === 'float32' ? (t.dataSync() as Float32Array) : Float32Array.from(t.dataSync());
      out.set(weightKey(spec.name), { shape: t.shape as number[], values });
    }
  } finally {
    tf.dispose(Object.values(named));
  }
  return out;
}

/** The raw layers, and the same weights keyed `<layer>/<weight>` for callers that need no matching. */
export type TfjsWeights = RawWeights & { weights: Map<string, WeightArray> };

async function readTfjs(source: string, modelJsonBytes: Uint8Array, read: Reader): Promise<TfjsWeights> {
  let parsed: z.infer<typeof ModelJsonSchema>;
  try {
    parsed = ModelJsonSchema.parse(JSON.parse(Buffer.from(modelJsonBytes).toString('utf8')));
  } catch (e) {
    throw new Error(`${source} is not a tfjs layers model.json with a weightsManifest: ${(e as Error).message.slice(0, 300)}`);
  }
  const specs: io.WeightsManifestEntry[] = [];
  const shards: Uint8Array[] = [];
  for (const group of parsed.weightsManifest) {
    specs.push(...(group.weights as io.WeightsManifestEntry[]));
    for (const p of group.paths) shards.push(await read(safeRelative(p, source)));
  }
  const data = Buffer.concat(shards);
  const scopes = [...new Set(specs.map((s) => s.name.split('/').slice(0, -2).join('/')).filter(Boolean))];
  const notes = scopes.length ? [`weight names scoped under ${scopes.join(', ')}`] : [];
  const weights = decodeTfjsWeights(data, specs);
  return { source, kind: 'tfjs', format: 'tfjs', sha256: sha256Hex(data), layers: layersFromKeyed(weights), weights, ignored: [], notes };
}

function localModelJson(p: string): string {
  return p.endsWith('.json') ? path.resolve(p) : path.resolve(p, 'model.json');
}

async function readLocal(source: string): Promise<TfjsWeights> {
  const jsonPath = localModelJson(source.startsWith('file://') ? fileURLToPath(source) : source);
  let json: Uint8Array;
  try {
    json = await readFile(jsonPath);
  } catch (e) {
    throw new Error(`cannot read tfjs weights ${jsonPath}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
  }
  const dir = path.dirname(jsonPath);
  return readTfjs(source, json, async (rel) => {
    try {
      return await readFile(path.join(dir, rel));
    } catch (e) {
      throw new Error(
        `cannot read weight shard ${path.join(dir, rel)} of ${jsonPath}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`,
      );
    }
  });
}

/** Folder under the cache holding a downloaded tfjs model, one per URL. */
export function httpCacheFolder(url: string): string {
  return path.join(cacheDir(), 'weights', `tfjs-${sha256Hex(Buffer.from(url)).slice(0, 16)}`);
}

/** Downloads model.json and its shards once into the cache, then reads them from there. */
async function readHttp(url: string): Promise<TfjsWeights> {
  const jsonUrl = new URL(url.endsWith('.json') ? url : `${url.replace(/\/?$/, '/')}model.json`);
  const folder = httpCacheFolder(jsonUrl.href);
  const jsonFile = path.join(folder, 'model.json');
  const cached = async (rel: string, href: string) => {
    const file = path.join(folder, rel);
    if (existsSync(file)) return readFile(file);
    const bytes = await fetchBytes(href);
    await writeFileAtomic(file, bytes);
    return bytes;
  };
  // model.json is written last (after its shards) so its presence means a complete download.
  let json: Uint8Array;
  if (existsSync(jsonFile)) json = await readFile(jsonFile);
  else json = await fetchBytes(jsonUrl.href);
  const result = await readTfjs(url, json, (rel) => cached(rel, new URL(rel, jsonUrl).href));
  if (!existsSync(jsonFile)) {
    await writeFileAtomic(jsonFile, json);
    await writeFileAtomic(path.join(folder, 'SOURCE_URL'), Buffer.from(`${jsonUrl.href}\n`));
  }
  return result;
}

async function readS3(uri: string): Promise<TfjsWeights> {
  // Imported lazily: the AWS SDK is only loaded when an s3:// source is used.
  const { getObject, parseS3Uri } = await import('../s3/client.js');
  const { bucket, key } = parseS3Uri(uri);
  const jsonKey = key.endsWith('.json') ? key : `${key.replace(/\/?$/, '/')}model.json`;
  const dir = path.posix.dirname(jsonKey);
  const get = async (k: string) => {
    try {
      return new Uint8Array((await getObject(`s3://${bucket}/${k}`)).body);
    } catch (e) {
      throw new Error(`cannot read s3://${bucket}/${k}: ${(e as Error).name}: ${(e as Error).message}`);
    }
  };
  return readTfjs(uri, await get(jsonKey), (rel) => get(dir === '.' ? rel : `${dir}/${rel}`));
}

/** Reads the weights of a tfjs layers model: local path or folder, file://, http(s)://, s3://. */
export async function readTfjsWeights(source: string): Promise<TfjsWeights> {
  if (/^https?:\/\//.test(source)) return readHttp(source);
  if (source.startsWith('s3://')) return readS3(source);
  return readLocal(source);
}
