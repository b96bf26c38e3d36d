// Reads a model's files (a folder, an S3 pointer or a pinned S3 version), checked against its
// manifest. Nothing here evaluates tfjs until a layers model is built (loadModel, loadLayers):
// serving from serving.onnx (loadServing) reads the manifest, the ONNX and the check images only.
import { readFile, stat } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { io, LayersModel } from '@tensorflow/tfjs';
import { type Manifest, ManifestSchema, type Serving, type Verification, VerificationSchema } from './manifest.js';
import type { S3Object } from './s3/client.js';
import { cleanEtag, isNotFound, ObjectTooLargeError } from './s3/errors.js';
import { isS3Uri, joinKey, parseS3Uri } from './s3/uri.js';
import { isVersion, parseCurrent, sha256 } from './versioning.js';
import { formatIssues } from './zod-issues.js';

/** The AWS SDK loads on the first s3:// read, not when a server serving a folder starts. */
async function getObject(uri: string, extra: { ifNoneMatch?: string; maxBytes?: number } = {}): Promise<S3Object> {
  return (await import('./s3/client.js')).getObject(uri, extra);
}

export interface LoadedModel {
  model: LayersModel;
  manifest: Manifest;
  /** The URI actually loaded: for a pointer, the version folder it named. */
  uri: string;
  version: string;
  /** current.json's ETag for pointers, manifest.json's for pinned S3 versions, the manifest version for folders. */
  etag?: string;
  /**
   * With `sameWeightsVerification`: verification.json when its probabilities were computed from the
   * very weights loaded (no quantization, or dtype none), else undefined.
   */
  verification?: Verification;
}

/** The model's files do not match its manifest: sha256 mismatch, missing file, bad manifest or pointer. */
export class ModelIntegrityError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'ModelIntegrityError';
  }
}

/** Where a model's files come from: a folder or an S3 prefix. */
export interface ModelSource {
  uri: string;
  /** A file of the model; with `maxBytes`, a larger one is refused before it is read. */
  read(file: string, opts?: { maxBytes?: number }): Promise<{ body: Buffer; etag?: string }>;
}

type Resolved =
  | { kind: 'local'; dir: string }
  | { kind: 's3-pointer'; bucket: string; prefix: string }
  | { kind: 's3-version'; bucket: string; prefix: string };

function localDir(uri: string): string {
  const p = uri.startsWith('file://') ? fileURLToPath(uri) : uri;
  return path.resolve(p.endsWith('.json') ? path.dirname(p) : p);
}

/**
 * s3://b/models/x (a pointer when x/current.json exists), s3://b/models/x/current.json (pointer),
 * s3://b/models/x/<version>[/model.json|/manifest.json] (pinned version).
 */
async function resolve(uri: string): Promise<Resolved> {
  if (!isS3Uri(uri)) return { kind: 'local', dir: localDir(uri) };
  const { bucket, key: raw } = parseS3Uri(uri);
  const key = raw.replace(/\/+$/, '');
  if (key === '') throw new Error(`${uri}: expected s3://bucket/models/<name>[/<version>]`);
  const base = path.posix.basename(key);
  if (base === 'current.json') return { kind: 's3-pointer', bucket, prefix: path.posix.dirname(key) };
  if (base === 'model.json' || base === 'manifest.json') return { kind: 's3-version', bucket, prefix: path.posix.dirname(key) };
  if (isVersion(base)) return { kind: 's3-version', bucket, prefix: key };
  return { kind: 's3-pointer', bucket, prefix: key };
}

export function s3Source(bucket: string, prefix: string): ModelSource {
  const uri = `s3://${bucket}/${prefix}`;
  return {
    uri,
    async read(file, opts = {}) {
      const target = `s3://${bucket}/${joinKey(prefix, file)}`;
      try {
        return await getObject(target, { maxBytes: opts.maxBytes });
      } catch (e) {
        if (isNotFound(e)) throw new ModelIntegrityError(`missing file ${target}`);
        if (e instanceof ObjectTooLargeError) throw new ModelIntegrityError(e.message);
        throw e;
      }
    },
  };
}

export function localSource(dir: string): ModelSource {
  return {
    uri: dir,
    async read(file, opts = {}) {
      const p = path.join(dir, file);
      try {
        if (opts.maxBytes !== undefined) {
          const { size } = await stat(p);
          if (size > opts.maxBytes) throw new ModelIntegrityError(`${p} is ${size} bytes, more than the ${opts.maxBytes} allowed`);
        }
        return { body: await readFile(p) };
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code === 'ENOENT') throw new ModelIntegrityError(`missing file ${p}`);
        throw e;
      }
    },
  };
}

function parseJson(body: Buffer, where: string): unknown {
  try {
    return JSON.parse(body.toString('utf8'));
  } catch (e) {
    throw new ModelIntegrityError(`${where} is not valid JSON: ${(e as Error).message}`);
  }
}

export function parseManifestStrict(json: unknown, where: string): Manifest {
  // Without zod's JIT: compiling the manifest's object parsers costs ~25 ms of a cold start, more than
  // the few parses a process makes ever win back.
  const r = ManifestSchema.safeParse(json, { jitless: true });
  if (!r.success) {
    throw new ModelIntegrityError(`${where}: invalid manifest: ${formatIssues(r.error)}`);
  }
  return r.data;
}

function safeRelative(file: string, where: string): string {
  const norm = path.posix.normalize(file);
  if (norm.startsWith('..') || path.posix.isAbsolute(norm))
    throw new ModelIntegrityError(`${where}: weight path "${file}" escapes the model folder`);
  return norm;
}

async function readManifest(source: ModelSource): Promise<{ manifest: Manifest; manifestEtag?: string }> {
  const m = await source.read('manifest.json');
  const where = `${source.uri}/manifest.json`;
  return { manifest: parseManifestStrict(parseJson(m.body, where), where), manifestEtag: m.etag };
}

/**
 * Reads model.json, manifest.json (unless `known` was read already) and the weight files, checks
 * every weight file's sha256 and size against manifest.files, and returns tfjs artifacts (quantized
 * weights are dequantized by tfjs).
 */
export async function readVerifiedArtifacts(
  source: ModelSource,
  verify = true,
  known?: { manifest: Manifest; manifestEtag?: string },
): Promise<{ artifacts: io.ModelArtifacts; manifest: Manifest; manifestEtag?: string }> {
  const { manifest, manifestEtag } = known ?? (await readManifest(source));
  const modelJson = parseJson((await source.read('model.json')).body, `${source.uri}/model.json`) as io.ModelJSON;
  if (!modelJson || typeof modelJson !== 'object' || !modelJson.modelTopology || !Array.isArray(modelJson.weightsManifest)) {
    throw new ModelIntegrityError(`${source.uri}/model.json is not a tfjs layers model (no modelTopology/weightsManifest)`);
  }
  const expected = new Map(manifest.files.map((f) => [safeRelative(f.path, source.uri), f]));
  const { artifactsFromModelJson } = await import('./model-json.js');
  const artifacts = await artifactsFromModelJson(modelJson, async (p) => {
    const rel = safeRelative(p, source.uri);
    const want = expected.get(rel);
    if (verify && !want) throw new ModelIntegrityError(`${source.uri}: weight file ${rel} is not listed in manifest.files`);
    const { body } = await source.read(rel);
    if (verify && want) {
      const got = sha256(body);
      if (got !== want.sha256) {
        throw new ModelIntegrityError(
          `${source.uri}/${rel}: sha256 mismatch: expected ${want.sha256} (${want.bytes} bytes), got ${got} (${body.byteLength} bytes)`,
        );
      }
    }
    return body;
  });
  return { manifest, manifestEtag, artifacts };
}

/** Largest serving.onnx the loader reads (float32 alpha 1.4 at 224 px is ~25 MB). */
export const MAX_SERVING_ONNX_BYTES = 256 * 1024 * 1024;

/** A version's serving.onnx and what checks it at load, read and verified. */
export interface ServingOnnxFiles {
  bytes: Uint8Array;
  record: Serving;
  /** The first `record.check.images` images of verification.json, NHWC RGB 0..255. */
  checkPixels: Float32Array;
}

/**
 * serving.onnx as manifest.serving records it (size-limited, sha256 checked) and the first
 * verification.json images its check runs; undefined when the manifest records none. A file that
 * does not match its record is a ModelIntegrityError.
 */
export async function readServingOnnx(source: ModelSource, manifest: Manifest): Promise<ServingOnnxFiles | undefined> {
  const record = manifest.serving;
  if (!record) return undefined;
  const rel = safeRelative(record.onnx.file, source.uri);
  const where = `${source.uri}/${rel}`;
  if (record.onnx.bytes > MAX_SERVING_ONNX_BYTES) {
    throw new ModelIntegrityError(
      `${where}: manifest.serving names ${record.onnx.bytes} bytes, more than the ${MAX_SERVING_ONNX_BYTES} allowed`,
    );
  }
  const [h, w] = record.onnx.inputShape;
  if (h !== manifest.input.size || w !== manifest.input.size) {
    throw new ModelIntegrityError(`${where}: takes ${h}x${w} images, the manifest's input is ${manifest.input.size} px`);
  }
  // Both reads at once (a cold start from S3 waits on each). Both sources refuse a larger file (a
  // ModelIntegrityError) before reading it.
  const checkFile = source.read('verification.json');
  checkFile.catch(() => {});
  const { body } = await source.read(rel, { maxBytes: record.onnx.bytes });
  const got = sha256(body);
  if (body.byteLength !== record.onnx.bytes || got !== record.onnx.sha256) {
    throw new ModelIntegrityError(
      `${where}: sha256 mismatch: expected ${record.onnx.sha256} (${record.onnx.bytes} bytes), got ${got} (${body.byteLength} bytes)`,
    );
  }
  const vWhere = `${source.uri}/verification.json`;
  const parsed = VerificationSchema.safeParse(parseJson((await checkFile).body, vWhere));
  if (!parsed.success) throw new ModelIntegrityError(`${vWhere} (the serving check's images): ${formatIssues(parsed.error)}`);
  const [n, vh, vw] = parsed.data.shape;
  const k = record.check.images;
  const pixels = Buffer.from(parsed.data.pixels, 'base64');
  if (vh !== h || vw !== w || n < k || pixels.byteLength < k * h * w * 3 || record.check.probabilities.length !== k) {
    throw new ModelIntegrityError(`${vWhere} does not hold the ${k} ${h}x${w} images manifest.serving.check was computed on`);
  }
  return {
    bytes: new Uint8Array(body.buffer, body.byteOffset, body.byteLength),
    record,
    checkPixels: Float32Array.from(pixels.subarray(0, k * h * w * 3)),
  };
}

export type Pointer = { current: ReturnType<typeof parseCurrent>; etag?: string };

/**
 * Reads `<prefix>/current.json`: the pointer, `'not-modified'` for a 304 to `ifNoneMatch`, or
 * `'missing'`. AWS S3 replaces an object atomically; file-backed stores (s3rver) can be read
 * mid-write, so a torn pointer is read again shortly; one that stays invalid is an integrity error.
 * The one reader of current.json, for the loader and the store alike.
 */
export async function readCurrentPointer(
  bucket: string,
  prefix: string,
  ifNoneMatch?: string,
  attempt = 1,
): Promise<Pointer | 'not-modified' | 'missing'> {
  const uri = `s3://${bucket}/${joinKey(prefix, 'current.json')}`;
  let obj: { body: Buffer; etag?: string };
  try {
    obj = await getObject(uri, { ifNoneMatch });
  } catch (e) {
    if ((e as { $metadata?: { httpStatusCode?: number } }).$metadata?.httpStatusCode === 304) return 'not-modified';
    if (isNotFound(e)) return 'missing';
    throw e;
  }
  try {
    return { current: parseCurrent(obj.body, uri), etag: obj.etag };
  } catch (e) {
    if (attempt < 4) {
      await new Promise((r) => setTimeout(r, 50 * attempt));
      return readCurrentPointer(bucket, prefix, ifNoneMatch, attempt + 1);
    }
    throw new ModelIntegrityError((e as Error).message);
  }
}

async function readPointer(bucket: string, prefix: string, ifNoneMatch?: string): Promise<Pointer | undefined> {
  const p = await readCurrentPointer(bucket, prefix, ifNoneMatch);
  if (p === 'not-modified') return undefined;
  if (p === 'missing') {
    throw new ModelIntegrityError(
      `s3://${bucket}/${joinKey(prefix, 'current.json')} does not exist: no version of s3://${bucket}/${prefix} has been promoted (or the URI is wrong)`,
    );
  }
  return p;
}

/** A version opened for serving: its manifest and, when asked for and recorded, its serving ONNX; the tfjs model on demand. */
export interface ServingLoad {
  manifest: Manifest;
  uri: string;
  version: string;
  etag?: string;
  onnx?: ServingOnnxFiles;
  /**
   * The same version's tfjs layers model (its weights' sha256 checked with verify), with
   * verification.json when `sameWeightsVerification` and the weights are those it was computed from.
   * Evaluates tfjs on first use.
   */
  loadLayers(opts?: { sameWeightsVerification?: boolean }): Promise<{ model: LayersModel; verification?: Verification }>;
}

/**
 * Opens a model from a local folder (or file:// URI), an S3 pointer `s3://bucket/models/<name>`
 * (follows current.json) or a pinned version `s3://bucket/models/<name>/<version>`: reads and
 * schema-checks manifest.json, and with `onnx` reads serving.onnx (readServingOnnx).
 */
export async function loadServing(uri: string, opts: { verify?: boolean; onnx?: boolean } = {}): Promise<ServingLoad> {
  const verify = opts.verify ?? true;
  const r = await resolve(uri);
  let source: ModelSource;
  let etag: string | undefined;
  let expectVersion: string | undefined;
  if (r.kind === 'local') {
    source = localSource(r.dir);
  } else if (r.kind === 's3-pointer') {
    const ptr = (await readPointer(r.bucket, r.prefix))!;
    source = s3Source(r.bucket, joinKey(r.prefix, ptr.current.version));
    etag = ptr.etag;
    expectVersion = ptr.current.version;
  } else {
    source = s3Source(r.bucket, r.prefix);
    const dirName = path.posix.basename(r.prefix);
    if (isVersion(dirName)) expectVersion = dirName;
  }
  const known = await readManifest(source);
  const { manifest, manifestEtag } = known;
  if (expectVersion && manifest.version !== expectVersion) {
    throw new ModelIntegrityError(`${source.uri}: manifest.json names version ${manifest.version}, expected ${expectVersion}`);
  }
  if (r.kind === 'local') etag = manifest.version;
  if (r.kind === 's3-version') etag = manifestEtag;
  const onnx = opts.onnx ? await readServingOnnx(source, manifest) : undefined;
  return {
    manifest,
    uri: source.uri,
    version: manifest.version,
    etag,
    ...(onnx ? { onnx } : {}),
    async loadLayers(o = {}) {
      const { artifacts } = await readVerifiedArtifacts(source, verify, known);
      const unquantized = (manifest.quantization?.dtype ?? 'none') === 'none';
      const verification = o.sameWeightsVerification && unquantized ? await readVerification(source) : undefined;
      const [{ initBackend }, { tf }] = await Promise.all([import('./backend.js'), import('./tf.js')]);
      await initBackend();
      const model = await tf.loadLayersModel(tf.io.fromMemory(artifacts));
      return { model, ...(verification ? { verification } : {}) };
    },
  };
}

/**
 * Loads a model (see loadServing for the URIs) as a tfjs layers model. With verify (default)
 * every weight file's sha256 is checked against manifest.files first.
 */
export async function loadModel(uri: string, opts: { verify?: boolean; sameWeightsVerification?: boolean } = {}): Promise<LoadedModel> {
  const opened = await loadServing(uri, { verify: opts.verify });
  const { model, verification } = await opened.loadLayers({ sameWeightsVerification: opts.sameWeightsVerification });
  const { manifest, version, etag } = opened;
  return { model, manifest, uri: opened.uri, version, etag, ...(verification ? { verification } : {}) };
}

/** verification.json of a model source, or undefined when it is missing or malformed (it is optional here). */
async function readVerification(source: ModelSource): Promise<Verification | undefined> {
  try {
    const parsed = VerificationSchema.safeParse(JSON.parse((await source.read('verification.json')).body.toString('utf8')));
    return parsed.success ? parsed.data : undefined;
  } catch {
    return undefined;
  }
}

/**
 * Cheap check whether `uri` now names something else than `knownEtag` (the LoadedModel.etag).
 * Pointers: conditional GET of current.json (If-None-Match). Pinned S3 versions never change.
 * Local folders: compares manifest.json's version.
 */
export async function checkForUpdate(
  uri: string,
  knownEtag?: string,
): Promise<{ changed: false } | { changed: true; version: string; etag?: string }> {
  const r = await resolve(uri);
  if (r.kind === 'local') {
    const src = localSource(r.dir);
    const manifest = parseManifestStrict(
      parseJson((await src.read('manifest.json')).body, `${r.dir}/manifest.json`),
      `${r.dir}/manifest.json`,
    );
    return manifest.version === knownEtag ? { changed: false } : { changed: true, version: manifest.version, etag: manifest.version };
  }
  if (r.kind === 's3-version') {
    if (knownEtag) return { changed: false };
    const m = await s3Source(r.bucket, r.prefix).read('manifest.json');
    const manifest = parseManifestStrict(
      parseJson(m.body, `s3://${r.bucket}/${r.prefix}/manifest.json`),
      `s3://${r.bucket}/${r.prefix}/manifest.json`,
    );
    return { changed: true, version: manifest.version, etag: m.etag };
  }
  const ptr = await readPointer(r.bucket, r.prefix, knownEtag);
  if (!ptr || (knownEtag && cleanEtag(ptr.etag) === cleanEtag(knownEtag))) return { changed: false };
  return { changed: true, version: ptr.current.version, etag: ptr.etag };
}
