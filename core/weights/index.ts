import { existsSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { LayersModel } from '@tensorflow/tfjs';
import { edgetuneConfig } from '../config.js';
import { formatAlpha, inferAlpha } from './alpha.js';
import { applyBaseWeights, modelWeightShapes, TOP_LAYER } from './apply.js';
import { cacheDir, DownloadError, fetchBytes, kerasModelsDir, sha256Hex, writeFileAtomic } from './cache.js';
import { readKerasH5Weights } from './h5-source.js';
import { readKerasArchive } from './keras-archive.js';
import { cachedKerasWeights, kerasWeightsFileName, kerasWeightsUrl } from './keras-official.js';
import { matchMobileNetV2, WeightsMatchError } from './match.js';
import { NSFWJS_SOURCE, readNsfwjsWeights } from './nsfwjs-source.js';
import { readTfjsWeights } from './tfjs-source.js';
import type { RawWeights, SourceWeights, WeightsFormat, WeightsKind } from './types.js';

export { alphaSignature, formatAlpha, inferAlpha } from './alpha.js';
export { applyBaseWeights, BaseWeightsMismatchError, isBaseLayerName, modelWeightShapes, TOP_LAYER } from './apply.js';
export { cacheDir, kerasModelsDir } from './cache.js';
export { type KerasLayerWeights, kerasLayerWeights, readKerasH5Weights, writeKerasH5Weights } from './h5-source.js';
export { formatWeightsReport, type WeightsReport, weightsReport } from './inspect.js';
export { readKerasArchive } from './keras-archive.js';
export { cachedKerasWeights, KERAS_SIZES, kerasWeightsFileName, kerasWeightsUrl } from './keras-official.js';
export { type MatchResult, matchMobileNetV2, WeightsMatchError } from './match.js';
export { BASE_LAYERS, classifyLayerName, mobileNetWeightShapes, TOP_ALIASES } from './mobilenet-layers.js';
export { NSFWJS_SOURCE, NSFWJS_WARNING } from './nsfwjs-source.js';
export type { FileLayer, RawWeights, SourceWeights, WeightArray, WeightsFormat, WeightsKind } from './types.js';

export const BASE_WEIGHTS_ENV = 'EDGETUNE_BASE_WEIGHTS';

export interface LoadedBaseWeights {
  /** The source read: path, URL, s3:// URI, or `nsfwjs`. */
  source: string;
  kind: WeightsKind;
  /** sha256 of the source bytes (tfjs/nsfwjs: the weight shards in manifest order; h5, .keras: the file). */
  sha256: string;
  format: WeightsFormat;
  /** How the source was matched to MobileNetV2 (also logged), e.g. `260 tensors: legacy names mapped, order checked, alpha 0.35`. */
  how: string;
  /** MobileNetV2 alpha inferred from the weights themselves. */
  alpha: number;
  /** Set when the weights are not ImageNet's (the nsfwjs fallback): print it. */
  warning?: string;
  /** Whether the ImageNet `predictions` layer was loaded too (model and source both have it). */
  top: boolean;
  /** Number of weight tensors set. */
  count: number;
  /** How the source was chosen when none was given (see resolveBaseWeights). */
  resolvedBy?: BaseWeightsOrigin;
}

export interface LoadBaseWeightsOptions {
  /** Progress and warnings; default stderr. */
  log?: (line: string) => void;
  /** Allow downloading the official Keras file when no source is given (default: unless EDGETUNE_OFFLINE=1). */
  online?: boolean;
  /** Fail unless the source also provides the ImageNet `predictions` layer for the model. */
  requireTop?: boolean;
}

const isH5 = (s: string) => /\.(h5|hdf5)(\?.*)?$/i.test(s);
const isKerasArchive = (s: string) => /\.keras(\?.*)?$/i.test(s);

/** Downloads a remote .h5 or .keras (http(s):// or s3://) once into the cache and returns the local path. */
async function localH5(source: string, log: (l: string) => void): Promise<string> {
  if (source.startsWith('file://')) return fileURLToPath(source);
  if (!/^(https?|s3):\/\//.test(source)) return source;
  const base = path.posix.basename(source.replace(/\?.*$/, ''));
  const official = /^mobilenet_v2_weights_tf_dim_ordering_tf_kernels_[\d.]+_\d+(_no_top)?\.h5$/.test(base);
  // Official files go where Keras keeps them, so both tools share one download.
  const file = official
    ? path.join(kerasModelsDir(), base)
    : path.join(cacheDir(), 'weights', `h5-${sha256Hex(Buffer.from(source)).slice(0, 16)}`, base);
  if (existsSync(file)) return file;
  log(`edgetune: downloading ${source} -> ${file}`);
  let bytes: Uint8Array;
  if (source.startsWith('s3://')) {
    const { getObject } = await import('../s3/client.js');
    bytes = new Uint8Array((await getObject(source)).body);
  } else {
    bytes = await fetchBytes(source);
  }
  await writeFileAtomic(file, bytes);
  return file;
}

/** Reads a source's weighted layers as stored, without matching them to MobileNetV2. */
export async function readRawWeights(source: string, log: (l: string) => void = (l) => console.error(l)): Promise<RawWeights> {
  if (source === NSFWJS_SOURCE) return readNsfwjsWeights();
  if (isH5(source)) return readKerasH5Weights(await localH5(source, log), source);
  if (isKerasArchive(source)) return readKerasArchive(await localH5(source, log), source);
  return readTfjsWeights(source);
}

/** Matches raw weights to MobileNetV2 (see matchMobileNetV2); errors name the source. */
export function matchRawWeights(raw: RawWeights): SourceWeights {
  const { layers, ...rest } = raw as RawWeights & { weights?: unknown };
  let m: ReturnType<typeof matchMobileNetV2>;
  try {
    m = matchMobileNetV2(layers, { unnamedHow: raw.unnamedHow, source: raw.source });
  } catch (e) {
    if (e instanceof WeightsMatchError) throw new WeightsMatchError(`${raw.source} (${raw.format}): ${e.message}`);
    throw e;
  }
  const how = raw.ignored.length
    ? `${m.how}; ignored ${raw.ignored.length} layer(s) outside the MobileNetV2 model: ${raw.ignored.join(', ')}`
    : m.how;
  return { ...rest, ignored: [...raw.ignored, ...m.ignored], weights: m.weights, alpha: m.alpha, top: m.top, naming: m.naming, how };
}

/**
 * Reads base weights from a source: a tfjs layers model (path or folder, file://, http(s)://, s3://
 * .../model.json), a Keras .h5 (Keras 2 weights or full model, Keras 3 `.weights.h5`) or a Keras 3
 * `.keras` archive (local, or remote and cached), or `nsfwjs` (the bundled fallback); then matches
 * it to MobileNetV2 as Keras would (see matchMobileNetV2) and logs how.
 */
export async function readBaseWeights(source: string, log: (l: string) => void = (l) => console.error(l)): Promise<SourceWeights> {
  const w = matchRawWeights(await readRawWeights(source, log));
  const notes = w.notes.length ? ` (${w.notes.join('; ')})` : '';
  log(`edgetune: base weights ${source}: ${w.format}${notes}; ${w.how}`);
  return w;
}

function modelInputSize(model: LayersModel): number {
  const s = model.inputs[0]?.shape;
  const size = s?.[1];
  if (typeof size !== 'number') throw new Error('cannot tell the model input size (expected [null, S, S, 3])');
  return size;
}

/**
 * Sets every MobileNetV2 base weight of `model` (a buildMobileNetV2 base or a buildClassifier graph)
 * by layer and weight name, independent of the input size. Without `source`, resolveBaseWeights
 * picks one for the model's alpha and size.
 */
export async function loadBaseWeights(model: LayersModel, source?: string, opts: LoadBaseWeightsOptions = {}): Promise<LoadedBaseWeights> {
  // Matched by the source's names or order (readBaseWeights), then set by today's names.
  const log = opts.log ?? ((l: string) => console.error(l));
  let resolvedBy: BaseWeightsOrigin | undefined;
  if (!source) {
    const shapes = modelWeightShapes(model);
    const resolved = await resolveBaseWeights({
      alpha: inferAlpha(shapes),
      inputSize: modelInputSize(model),
      online: opts.online,
      includeTop: opts.requireTop,
      log,
    });
    source = resolved.source;
    resolvedBy = resolved.origin;
  }
  const w = await readBaseWeights(source, log);
  const applied = applyBaseWeights(model, w.weights, `The ${w.kind} weights from ${source}`);
  if (opts.requireTop && !applied.top) {
    const hasTop = model.layers.some((l) => l.name === TOP_LAYER);
    throw new Error(
      hasTop
        ? `${source} has no ImageNet top (predictions/kernel [1280, 1000], predictions/bias) matching the model: use weights saved with include_top=True`
        : `the model has no '${TOP_LAYER}' layer: build it with includeTop`,
    );
  }
  if (w.warning) for (const line of ['', `!!! ${w.warning}`, '']) log(line);
  return {
    source,
    kind: w.kind,
    format: w.format,
    how: w.how,
    sha256: w.sha256,
    alpha: w.alpha,
    warning: w.warning,
    top: applied.top,
    count: applied.count,
    resolvedBy,
  };
}

export type BaseWeightsOrigin = 'flag' | 'env' | 'keras-cache' | 'download' | 'nsfwjs';

export interface ResolveBaseWeightsOptions {
  /** Explicit source (the `--base-weights` flag): wins over everything. */
  baseWeights?: string;
  /** Wanted alpha; default 1.0 (Keras' default). */
  alpha?: number;
  inputSize: number;
  /** Allow downloading the official Keras file (default: unless EDGETUNE_OFFLINE=1). */
  online?: boolean;
  /** Need the ImageNet top (the `imagenet` command). */
  includeTop?: boolean;
  log?: (line: string) => void;
  env?: NodeJS.ProcessEnv;
}

export interface ResolvedBaseWeights {
  source: string;
  origin: BaseWeightsOrigin;
  /** What was tried before, for logs. */
  notes: string[];
}

/**
 * The default order: explicit flag > EDGETUNE_BASE_WEIGHTS > the official Keras .h5 for that
 * alpha/size cached in ~/.keras/models > downloading it (only online; fails fast offline) >
 * the nsfwjs MobileNetV2 (alpha 1.0 only, without an ImageNet top; warns).
 */
export async function resolveBaseWeights(opts: ResolveBaseWeightsOptions): Promise<ResolvedBaseWeights> {
  const config = edgetuneConfig(opts.env ?? process.env);
  const log = opts.log ?? ((l: string) => console.error(l));
  const alpha = opts.alpha ?? 1.0;
  const includeTop = opts.includeTop ?? false;
  const notes: string[] = [];
  if (opts.baseWeights) return { source: opts.baseWeights, origin: 'flag', notes };
  if (config.EDGETUNE_BASE_WEIGHTS) return { source: config.EDGETUNE_BASE_WEIGHTS, origin: 'env', notes };
  notes.push(`no --base-weights and no ${BASE_WEIGHTS_ENV}`);

  const cached = cachedKerasWeights(alpha, opts.inputSize, includeTop);
  if (cached.length) return { source: cached[0], origin: 'keras-cache', notes };
  const file = kerasWeightsFileName(alpha, opts.inputSize, includeTop);
  notes.push(`${file} not in ${kerasModelsDir()}`);

  const online = opts.online ?? !config.EDGETUNE_OFFLINE;
  if (online) {
    const url = kerasWeightsUrl(alpha, opts.inputSize, includeTop);
    const target = path.join(kerasModelsDir(), file);
    try {
      // A short probe first so an offline machine fails in seconds, not after the download timeout.
      const probe = await fetch(url, { method: 'HEAD', signal: AbortSignal.timeout(10_000) }).catch(
        (e: Error & { cause?: { code?: string } }) => {
          throw new DownloadError(`cannot reach ${new URL(url).host} (${e.cause?.code ?? e.message}): offline?`);
        },
      );
      if (!probe.ok) throw new DownloadError(`${url}: HTTP ${probe.status}`);
      log(`edgetune: downloading ${url} -> ${target}`);
      await writeFileAtomic(target, await fetchBytes(url, 600_000));
      return { source: target, origin: 'download', notes };
    } catch (e) {
      const why = (e as Error).message;
      notes.push(`download failed: ${why}`);
      log(`edgetune: could not download the official Keras weights: ${why}`);
    }
  } else {
    notes.push('offline (EDGETUNE_OFFLINE or online: false): not downloading the official Keras weights');
  }

  if (alpha !== 1.0 || includeTop) {
    throw new Error(
      `no ImageNet MobileNetV2 weights for alpha ${formatAlpha(alpha)}${includeTop ? ' with the ImageNet top' : ''} at ${opts.inputSize}: ${notes.join('; ')}. ` +
        `The offline fallback (nsfwjs) only has alpha 1.0 without an ImageNet top. Pass --base-weights <model.json|.h5> or set ${BASE_WEIGHTS_ENV}.`,
    );
  }
  log(`edgetune: falling back to the nsfwjs MobileNetV2 (${notes.join('; ')})`);
  return { source: NSFWJS_SOURCE, origin: 'nsfwjs', notes };
}
