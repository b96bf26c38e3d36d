import { readdir, readFile } from 'node:fs/promises';
import path from 'node:path';
import { initBackend } from '../core/backend.js';
import { toClassProbabilities } from '../core/classifier.js';
import type { FormatId } from '../core/export/formats.js';
import { type Manifest, type PublishedFormat, type Verification, VerificationSchema } from '../core/manifest.js';
import { modelJsonText } from '../core/model-json.js';
import {
  loadModel,
  localSource,
  ModelIntegrityError,
  readCurrentPointer,
  readServingOnnx,
  readVerifiedArtifacts,
  s3Source,
} from '../core/model-loader.js';
import { maxAbsDiff } from '../core/probability-rows.js';
import { type QuantizeDtype, quantizeWeights } from '../core/quantize.js';
import { getObjectIfExists, headObject, listObjects, putObject, sdkClient } from '../core/s3/client.js';
import { mapLimit } from '../core/s3/retry.js';
import { joinKey, parseS3Uri } from '../core/s3/uri.js';
import { buildServingOnnx } from '../core/serving-onnx.js';
import { tf } from '../core/tf.js';
import { type Current, isVersion, newVersionName, sha256 } from '../core/versioning.js';
import { formatIssues } from '../core/zod-issues.js';
import { stageFormats, verifyUploadedFormats } from './publish-formats.js';

export interface PublishOptions {
  quantize?: QuantizeDtype;
  /** Promotion gate: the new version's val accuracy may be this much below the current one's. Default 0.01. */
  tolerance?: number;
  /** Largest val-accuracy drop quantization may cause before publishing is refused. Default 0.005. */
  quantizeTolerance?: number;
  force?: boolean;
  /**
   * Export formats to upload with the version (from the folder's exports.json, see `edgetune export`).
   * `tfjs` is the version itself and always recorded; any other id must have been exported.
   */
  formats?: readonly FormatId[];
  /** Validation accuracy on the real validation set; without it, the verification samples are used. */
  evaluate?: (model: tf.LayersModel) => Promise<number>;
  log?: (line: string) => void;
}

export interface PublishResult {
  version: string;
  promoted: boolean;
  reason: string;
  uri: string;
  timings: Record<string, number>;
  quantization: NonNullable<Manifest['quantization']> & { measuredOn: string };
  /** The formats recorded in the version's manifest (tfjs first). */
  formats: PublishedFormat[];
}

/**
 * How far the S3 copy's probabilities may drift from verification.json's, by quantization.
 * Measured on the BN-calibrated random alpha 0.35 test models (deliberately sensitive): float16
 * up to ~2.8e-2. Per-tensor uint8 moves such a model's probabilities by up to ~0.66, so no
 * probability bound is meaningful there: uint8 relies on the accuracy check (quantizeTolerance)
 * and on the exact match against the locally quantized model.
 */
export const VERIFY_TOLERANCE: Record<QuantizeDtype, number | undefined> = { none: 1e-3, float16: 0.05, uint8: undefined };
/** The S3 copy must give the locally quantized model's probabilities: same bytes, same backend. */
const EXACT_TOLERANCE = 1e-6;

/** `s3://bucket/models/<name>` -> bucket, the model prefix and the name. */
export function parseModelTarget(target: string): { bucket: string; prefix: string; name: string } {
  const { bucket, key } = parseS3Uri(target);
  const prefix = key.replace(/\/+$/, '');
  const name = path.posix.basename(prefix);
  if (!prefix || isVersion(name) || name.endsWith('.json')) {
    throw new Error(`${target}: expected s3://bucket/models/<name> (the model, not a version or a file)`);
  }
  return { bucket, prefix, name };
}

export function manifestValAccuracy(m: Manifest): number {
  return (m.metrics.fineTuned ?? m.metrics.frozen).valAccuracy;
}

async function readVerification(dir: string): Promise<Verification> {
  const p = path.join(dir, 'verification.json');
  let json: unknown;
  try {
    json = JSON.parse(await readFile(p, 'utf8'));
  } catch (e) {
    throw new Error(`cannot read ${p} (needed to verify the published copy): ${(e as Error).message}`);
  }
  const r = VerificationSchema.safeParse(json);
  if (!r.success) throw new Error(`${p} is invalid: ${formatIssues(r.error)}`);
  return r.data;
}

/** The model's class probabilities for the verification inputs. */
export async function predictVerification(model: tf.LayersModel, v: Verification, numClasses: number): Promise<number[][]> {
  const pixels = Buffer.from(v.pixels, 'base64');
  const out = tf.tidy(() => model.predict(tf.tensor4d(new Uint8Array(pixels), v.shape, 'int32').toFloat()) as tf.Tensor);
  try {
    return toClassProbabilities((await out.data()) as Float32Array, numClasses);
  } finally {
    out.dispose();
  }
}

function accuracyOn(probs: number[][], labels: number[]): number {
  let ok = 0;
  probs.forEach((row, i) => {
    if (row.indexOf(Math.max(...row)) === labels[i]) ok++;
  });
  return labels.length ? ok / labels.length : 0;
}

async function listFilesRecursive(dir: string): Promise<string[]> {
  const out: string[] = [];
  let entries: import('node:fs').Dirent[];
  try {
    entries = await readdir(dir, { withFileTypes: true });
  } catch {
    return out;
  }
  for (const e of entries) {
    const p = path.join(dir, e.name);
    if (e.isDirectory()) out.push(...(await listFilesRecursive(p)));
    else if (e.isFile()) out.push(p);
  }
  return out;
}

export interface CurrentState {
  current?: Current;
  etag?: string;
}

export async function readCurrent(bucket: string, prefix: string): Promise<CurrentState> {
  const p = await readCurrentPointer(bucket, prefix);
  return typeof p === 'string' ? {} : p;
}

/**
 * Writes current.json conditionally (If-Match the ETag read before, or If-None-Match * when there
 * was none) and reads it back: s3rver ignores conditional headers, so the read-back is what
 * proves our write is the one that landed.
 */
export async function switchCurrent(bucket: string, prefix: string, next: Current, expectedEtag: string | undefined): Promise<void> {
  const uri = `s3://${bucket}/${joinKey(prefix, 'current.json')}`;
  try {
    await putObject(uri, JSON.stringify(next, null, 2), {
      ContentType: 'application/json',
      CacheControl: 'no-cache',
      ...(expectedEtag ? { IfMatch: expectedEtag } : { IfNoneMatch: '*' }),
    });
  } catch (e) {
    if (isPreconditionFailed(e)) {
      throw new ConcurrentWriteError(
        `${uri} changed while publishing (another publish or promote won the race); nothing was switched, rerun to retry`,
      );
    }
    throw e;
  }
  const back = await readCurrent(bucket, prefix);
  if (back.current?.version !== next.version || back.current.promotedAt !== next.promotedAt) {
    throw new ConcurrentWriteError(
      `${uri} names ${back.current?.version ?? 'nothing'} after writing ${next.version}: a concurrent writer won; rerun to retry`,
    );
  }
}

/** A conditional write lost to another writer (HTTP 412, or 409 for a concurrent conditional write). */
export class ConcurrentWriteError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'ConcurrentWriteError';
  }
}

export function isPreconditionFailed(e: unknown): boolean {
  const status = (e as { $metadata?: { httpStatusCode?: number } })?.$metadata?.httpStatusCode;
  return status === 412 || status === 409 || (e as { name?: string })?.name === 'PreconditionFailed';
}

/** Written after a version's S3 copy was read back and reproduced its verification predictions. */
export const VERIFIED_MARKER = 'verified.json';
/** Written first, with If-None-Match: the publisher that creates it owns the version name. */
export const CLAIM_FILE = 'claim.json';

/** True when the version carries the marker publishing writes only after verification. */
export async function isVerified(bucket: string, versionPrefix: string): Promise<boolean> {
  return (await headObject(`s3://${bucket}/${joinKey(versionPrefix, VERIFIED_MARKER)}`)) !== undefined;
}

function nextCurrent(name: string, version: string, reason: string, valAccuracy: number | undefined, prev: Current | undefined): Current {
  const history = prev
    ? [{ version: prev.version, promotedAt: prev.promotedAt, valAccuracy: prev.valAccuracy, reason: prev.reason }, ...prev.history].slice(
        0,
        50,
      )
    : [];
  return { schemaVersion: 1, name, version, promotedAt: new Date().toISOString(), valAccuracy, reason, history };
}

async function currentAccuracy(bucket: string, prefix: string, cur: Current): Promise<number> {
  if (cur.valAccuracy !== undefined) return cur.valAccuracy;
  const m = await s3Source(bucket, joinKey(prefix, cur.version)).read('manifest.json');
  return manifestValAccuracy(JSON.parse(m.body.toString()) as Manifest);
}

/**
 * What the gate compares, like with like: the test-split accuracies (selection-free) when both
 * versions have one, else the validation accuracies as before.
 */
async function gateFigures(
  bucket: string,
  prefix: string,
  cur: Current,
  src: Manifest,
  gateAccuracy: number,
): Promise<{ mine: number; theirs: number; what: string }> {
  if (src.metrics.test) {
    const m = await s3Source(bucket, joinKey(prefix, cur.version)).read('manifest.json');
    const theirs = (JSON.parse(m.body.toString()) as Manifest).metrics?.test;
    if (theirs) return { mine: src.metrics.test.valAccuracy, theirs: theirs.valAccuracy, what: 'test accuracy' };
  }
  return { mine: gateAccuracy, theirs: await currentAccuracy(bucket, prefix, cur), what: 'val accuracy' };
}

/** Deletes exactly these keys (the files this publisher wrote), never a listing that could include another writer's. */
async function deleteKeys(bucket: string, keys: string[]): Promise<void> {
  for (let i = 0; i < keys.length; i += 1000) {
    const { sdk, client } = await sdkClient();
    const out = await client.send(
      new sdk.DeleteObjectsCommand({ Bucket: bucket, Delete: { Objects: keys.slice(i, i + 1000).map((Key) => ({ Key })), Quiet: true } }),
    );
    if (out.Errors?.length)
      throw new Error(`could not delete ${out.Errors.length} object(s), e.g. ${out.Errors[0].Key}: ${out.Errors[0].Code}`);
  }
}

/**
 * Publishes a model directory as a new immutable version under `target` (s3://bucket/models/<name>):
 * quantize (refusing an accuracy drop beyond quantizeTolerance) -> upload every file, manifest.json
 * last -> read back and verify each weight file's sha256 -> load from S3 and reproduce the
 * verification predictions -> promotion gate -> conditional switch of current.json.
 * Any failure before the switch leaves current.json untouched.
 */
export async function publishModel(modelDir: string, target: string, opts: PublishOptions = {}): Promise<PublishResult> {
  const log = opts.log ?? ((l: string) => console.error(l));
  const dtype = opts.quantize ?? 'float16';
  const tolerance = opts.tolerance ?? 0.01;
  const qTolerance = opts.quantizeTolerance ?? 0.005;
  const { bucket, prefix, name } = parseModelTarget(target);
  const timings: Record<string, number> = {};
  const t0 = performance.now();
  let mark = t0;
  const lap = (phase: string) => {
    const now = performance.now();
    timings[phase] = Math.round(now - mark);
    mark = now;
  };
  await initBackend();

  // 1. The local model must itself be intact and reproduce its own verification file.
  const dir = path.resolve(modelDir);
  const { artifacts, manifest: src } = await readVerifiedArtifacts(localSource(dir));
  const verification = await readVerification(dir);
  // Every requested format must be exported and intact before anything is uploaded.
  const staged = await stageFormats(dir, opts.formats ?? [], src);
  const nClasses = src.classes.length;
  const original = await tf.loadLayersModel(tf.io.fromMemory(artifacts));
  let quantized: tf.LayersModel | undefined;
  let quantization: PublishResult['quantization'];
  let q: ReturnType<typeof quantizeWeights>;
  let gateAccuracy: number;
  let qProbs: number[][];
  let tfjsFigures: Pick<PublishedFormat, 'maxAbsDiff' | 'accuracy' | 'referenceAccuracy' | 'measuredOn'>;
  let serving: ReturnType<typeof buildServingOnnx>;
  try {
    const origProbs = await predictVerification(original, verification, nClasses);
    const selfDiff = maxAbsDiff(origProbs, verification.probabilities);
    if (selfDiff > (VERIFY_TOLERANCE.none as number)) {
      throw new ModelIntegrityError(
        `${dir}: the model does not reproduce verification.json (max |dp| = ${selfDiff.toExponential(2)}); refusing to publish`,
      );
    }
    lap('loadLocal');

    // 2. Quantize and measure what it costs.
    q = quantizeWeights(artifacts.weightSpecs ?? [], artifacts.weightData as ArrayBuffer, dtype);
    const qBuf = q.data;
    quantized = await tf.loadLayersModel(
      tf.io.fromMemory({
        ...artifacts,
        weightSpecs: q.specs,
        weightData: qBuf.buffer.slice(qBuf.byteOffset, qBuf.byteOffset + qBuf.byteLength),
      }),
    );
    qProbs = await predictVerification(quantized, verification, nClasses);
    let unqAcc: number;
    let qAcc: number;
    let measuredOn: string;
    if (opts.evaluate) {
      unqAcc = await opts.evaluate(original);
      qAcc = dtype === 'none' ? unqAcc : await opts.evaluate(quantized);
      measuredOn = 'validation set';
      gateAccuracy = qAcc;
    } else {
      unqAcc = accuracyOn(origProbs, verification.labels);
      qAcc = accuracyOn(qProbs, verification.labels);
      measuredOn = `${verification.labels.length} verification samples`;
      gateAccuracy = manifestValAccuracy(src);
    }
    tfjsFigures = { maxAbsDiff: maxAbsDiff(qProbs, verification.probabilities), accuracy: qAcc, referenceAccuracy: unqAcc, measuredOn };
    const unqBytes = Buffer.from(artifacts.weightData as ArrayBuffer).byteLength;
    quantization = {
      dtype,
      weightBytes: qBuf.byteLength,
      unquantizedWeightBytes: unqBytes,
      valAccuracy: qAcc,
      unquantizedValAccuracy: unqAcc,
      measuredOn,
    };
    log(
      `quantize ${dtype}: weights ${unqBytes} -> ${qBuf.byteLength} bytes (${((100 * qBuf.byteLength) / unqBytes).toFixed(1)}%), ` +
        `accuracy ${unqAcc.toFixed(4)} -> ${qAcc.toFixed(4)} on ${measuredOn}, max |dp| vs verification ${maxAbsDiff(qProbs, verification.probabilities).toExponential(2)}`,
    );
    if (unqAcc - qAcc > qTolerance) {
      throw new Error(
        `quantization ${dtype} drops accuracy from ${unqAcc.toFixed(4)} to ${qAcc.toFixed(4)} on ${measuredOn} (more than the tolerance ${qTolerance}); ` +
          'publish with a milder --quantize or a larger --quantize-tolerance',
      );
    }
    lap('quantize');
    // What onnxruntime serves: the fused graph of the quantized weights as tfjs dequantizes them.
    serving = buildServingOnnx(quantized, verification, qProbs, dtype === 'none' ? 'float32' : dtype);
    lap('servingOnnx');
  } finally {
    original.dispose();
    quantized?.dispose();
  }

  // 3. Claim a fresh version name (conditional create; a name another publisher holds is never reused),
  // then the version's files, manifest.json last.
  const modelJson = modelJsonText(artifacts, q.specs);
  const { version, written } = await claimVersion(bucket, prefix, log);
  const versionPrefix = joinKey(prefix, version);
  const weightFile = { path: 'weights.bin', bytes: q.data.byteLength, sha256: sha256(q.data) };
  const modelJsonFile = { path: 'model.json', bytes: Buffer.byteLength(modelJson), sha256: sha256(modelJson) };
  // tfjs is the version itself (model.json + the --quantize weights); the others come from exports.json.
  const tfjsFormat: PublishedFormat = {
    id: 'tfjs',
    file: 'model.json',
    bytes: modelJsonFile.bytes + weightFile.bytes,
    sha256: modelJsonFile.sha256,
    files: [modelJsonFile, weightFile],
    runtime: `tfjs ${tf.version.tfjs}`,
    weights: dtype === 'none' ? 'float32' : dtype,
    ...tfjsFigures,
  };
  const manifest: Manifest = {
    ...src,
    name,
    version,
    files: [weightFile],
    quantization,
    formats: [tfjsFormat, ...staged.records],
    ...(serving ? { serving: serving.record } : {}),
  };
  const reportFiles = await listFilesRecursive(path.join(dir, 'report'));
  const uploads: Array<{ rel: string; body: () => Promise<Buffer | string>; type: string }> = [
    { rel: 'weights.bin', body: async () => q.data, type: 'application/octet-stream' },
    { rel: 'model.json', body: async () => modelJson, type: 'application/json' },
    { rel: 'verification.json', body: () => readFile(path.join(dir, 'verification.json')), type: 'application/json' },
    ...(serving ? [{ rel: serving.record.onnx.file, body: async () => Buffer.from(serving.bytes), type: 'application/octet-stream' }] : []),
    ...staged.uploads.map((u) => ({ rel: u.rel, body: async () => u.body, type: u.type })),
    ...reportFiles.map((f) => ({
      rel: path.relative(dir, f).split(path.sep).join('/'),
      body: () => readFile(f),
      type: contentType(f),
    })),
  ];
  const versionUri = `s3://${bucket}/${versionPrefix}`;
  log(`publish ${versionUri}: uploading ${uploads.length + 1} files`);
  let verifiedDiff: number;
  // Set when a conditional write into our version failed: someone else writes there, so nothing may be deleted.
  let lostOwnership = false;
  try {
    await mapLimit(uploads, 4, async (u) => {
      const key = joinKey(versionPrefix, u.rel);
      written.push(key);
      await putObject(`s3://${bucket}/${key}`, await u.body(), { ContentType: u.type });
    });
    const manifestKey = joinKey(versionPrefix, 'manifest.json');
    try {
      await putObject(`s3://${bucket}/${manifestKey}`, JSON.stringify(manifest, null, 2), {
        ContentType: 'application/json',
        IfNoneMatch: '*',
      });
      written.push(manifestKey);
    } catch (e) {
      if (isPreconditionFailed(e)) lostOwnership = true;
      throw e;
    }
    lap('upload');

    // 4. Read everything back: each format file's sha256, then through the loader (sha256 of each weight
    // file) and reproduce the predictions.
    await verifyUploadedFormats(bucket, versionPrefix, staged.uploads);
    const loaded = await loadModel(versionUri, { verify: true });
    try {
      // serving.onnx read back like the weights: its size and sha256 against the manifest uploaded.
      if (serving && !(await readServingOnnx(s3Source(bucket, versionPrefix), loaded.manifest))) {
        throw new ModelIntegrityError(`${versionUri}/manifest.json lost its serving record`);
      }
      const probs = await predictVerification(loaded.model, verification, nClasses);
      const exact = maxAbsDiff(probs, qProbs);
      if (exact > EXACT_TOLERANCE) {
        throw new ModelIntegrityError(
          `${versionUri} predicts differently from the model that was uploaded: max |dp| = ${exact.toExponential(2)}`,
        );
      }
      const diff = maxAbsDiff(probs, verification.probabilities);
      const tol = VERIFY_TOLERANCE[dtype];
      if (tol !== undefined && diff > tol) {
        throw new ModelIntegrityError(
          `${versionUri} does not reproduce verification.json: max |dp| = ${diff.toExponential(2)} > ${tol} (${dtype})`,
        );
      }
      verifiedDiff = diff;
      log(
        `verified ${versionUri}: sha256 of ${manifest.files.length} weight file(s)${serving ? `, ${serving.record.onnx.file}` : ''}${staged.uploads.length ? ` and ${staged.uploads.length} format file(s)` : ''} ok, max |dp| vs verification.json ${diff.toExponential(2)}`,
      );
    } finally {
      loaded.model.dispose();
    }
    lap('verify');
  } catch (e) {
    // The version has no verified marker, so list/promote/rollback and the gate never count it. Remove
    // the files this publisher wrote when it still owns the name; after a 412, touch nothing.
    if (!lostOwnership) {
      await deleteKeys(bucket, written).catch((d) => log(`could not remove the unverified ${versionUri}: ${(d as Error).message}`));
    }
    throw e;
  }
  // The marker: only now does the version count.
  await putObject(
    `s3://${bucket}/${joinKey(versionPrefix, VERIFIED_MARKER)}`,
    JSON.stringify(
      { version, verifiedAt: new Date().toISOString(), weightsSha256: manifest.files[0].sha256, maxAbsDiff: verifiedDiff, dtype },
      null,
      2,
    ),
    { ContentType: 'application/json', IfNoneMatch: '*' },
  );

  // 5. Promotion gate, then the pointer switch. Losing the switch to a concurrent publish or promote
  // re-reads the pointer and runs the gate again against the new current version; nothing is deleted.
  let promoted = false;
  let reason = '';
  for (let attempt = 1; ; attempt++) {
    const { current, etag } = await readCurrent(bucket, prefix);
    if (!current) {
      promoted = true;
      reason = 'no current version';
    } else {
      const { mine, theirs, what } = await gateFigures(bucket, prefix, current, src, gateAccuracy);
      if (mine >= theirs - tolerance) {
        promoted = true;
        reason = `${what} ${mine.toFixed(4)} >= current ${current.version}'s ${theirs.toFixed(4)} - tolerance ${tolerance}`;
      } else if (opts.force) {
        promoted = true;
        reason = `forced: ${what} ${mine.toFixed(4)} < current ${current.version}'s ${theirs.toFixed(4)} - tolerance ${tolerance}`;
      } else {
        promoted = false;
        reason = `not promoted: ${what} ${mine.toFixed(4)} < current ${current.version}'s ${theirs.toFixed(4)} - tolerance ${tolerance} (use --force to override)`;
      }
    }
    if (!promoted) break;
    try {
      await switchCurrent(bucket, prefix, nextCurrent(name, version, reason, gateAccuracy, current), etag);
      break;
    } catch (e) {
      if (!(e instanceof ConcurrentWriteError) || attempt >= 3) {
        if (e instanceof ConcurrentWriteError) {
          throw new ConcurrentWriteError(`${(e as Error).message}; ${versionUri} is stored and verified: \`edgetune models promote\` it`);
        }
        throw e;
      }
      log(`publish ${versionUri}: current.json changed meanwhile, running the gate again (${(e as Error).message})`);
    }
  }
  lap('promote');
  timings.total = Math.round(performance.now() - t0);
  log(
    `${promoted ? 'promoted' : 'stored'} ${versionUri}: ${reason} (${Object.entries(timings)
      .map(([k, v]) => `${k} ${v} ms`)
      .join(', ')})`,
  );
  return { version, promoted, reason, uri: versionUri, timings, quantization, formats: manifest.formats ?? [] };
}

/**
 * Claims a new version name: a random one (newVersionName), created with If-None-Match so a name
 * another publisher holds fails with 412 and the next one is tried. s3rver ignores the condition, so
 * the claim is read back too. Returns the name and the list of keys written so far (the claim).
 */
async function claimVersion(bucket: string, prefix: string, log: (l: string) => void): Promise<{ version: string; written: string[] }> {
  for (let i = 0; i < 5; i++) {
    const version = newVersionName();
    const key = joinKey(prefix, version, CLAIM_FILE);
    const token = `${process.pid}-${Math.random().toString(36).slice(2)}-${Date.now()}`;
    try {
      await putObject(`s3://${bucket}/${key}`, JSON.stringify({ token, claimedAt: new Date().toISOString() }), {
        ContentType: 'application/json',
        IfNoneMatch: '*',
      });
    } catch (e) {
      if (isPreconditionFailed(e)) {
        log(`publish: version name ${version} is taken, trying another`);
        continue;
      }
      throw e;
    }
    const back = await getObjectIfExists(`s3://${bucket}/${key}`);
    if (back && safeJsonToken(back.body) === token) return { version, written: [key] };
    log(`publish: version name ${version} was claimed by another publisher, trying another`);
  }
  throw new Error(`s3://${bucket}/${prefix}: could not claim a free version name`);
}

function safeJsonToken(body: Buffer): string | undefined {
  try {
    return (JSON.parse(body.toString()) as { token?: string }).token;
  } catch {
    return undefined;
  }
}

function contentType(file: string): string {
  const ext = path.extname(file).toLowerCase();
  return (
    {
      '.html': 'text/html',
      '.svg': 'image/svg+xml',
      '.png': 'image/png',
      '.json': 'application/json',
      '.css': 'text/css',
      '.js': 'text/javascript',
    }[ext] ?? 'application/octet-stream'
  );
}

export interface VersionInfo {
  version: string;
  /** manifest.json is there. */
  complete: boolean;
  /** The verified marker is there: only such versions count (promote, rollback, the gate's pointer). */
  verified: boolean;
  current: boolean;
  /** The training run's validation accuracy (manifest metrics). */
  valAccuracy?: number;
  quantization?: string;
  /** Accuracy of the quantized weights, and what it was measured on. */
  quantizedAccuracy?: number;
  measuredOn?: string;
  weightBytes?: number;
  createdAt?: string;
}

/** Every version under the model prefix, oldest first, with the live one marked. */
export async function listVersions(target: string): Promise<{ versions: VersionInfo[]; current?: Current }> {
  const { bucket, prefix } = parseModelTarget(target);
  const [{ prefixes }, { current }] = await Promise.all([
    listObjects(bucket, `${prefix}/`, { delimiter: '/' }),
    readCurrent(bucket, prefix),
  ]);
  const names = prefixes
    .map((p) => path.posix.basename(p.replace(/\/$/, '')))
    .filter(isVersion)
    .sort();
  const versions = await mapLimit(names, 4, async (version): Promise<VersionInfo> => {
    const [m, verified] = await Promise.all([
      getObjectIfExists(`s3://${bucket}/${joinKey(prefix, version, 'manifest.json')}`),
      isVerified(bucket, joinKey(prefix, version)),
    ]);
    if (!m) return { version, complete: false, verified, current: current?.version === version };
    const man = JSON.parse(m.body.toString()) as Manifest & { quantization?: { measuredOn?: string } };
    return {
      version,
      complete: true,
      verified,
      current: current?.version === version,
      valAccuracy: manifestValAccuracy(man),
      quantization: man.quantization?.dtype,
      quantizedAccuracy: man.quantization?.valAccuracy,
      measuredOn: man.quantization?.measuredOn,
      weightBytes: man.files.reduce((a, f) => a + f.bytes, 0),
      createdAt: man.createdAt,
    };
  });
  return { versions, current };
}

/** Makes `version` current after checking it was verified when published and loads with intact weights. */
export async function promoteVersion(
  target: string,
  version: string,
  opts: { reason?: string; log?: (l: string) => void } = {},
): Promise<Current> {
  const { bucket, prefix, name } = parseModelTarget(target);
  if (!isVersion(version)) throw new Error(`"${version}" is not a version name (like 20261127T201500Z-3fa2c1d0)`);
  if (!(await isVerified(bucket, joinKey(prefix, version)))) {
    throw new Error(`${target}/${version} has no ${VERIFIED_MARKER}: its publish did not finish verification, so it cannot be promoted`);
  }
  const loaded = await loadModel(`s3://${bucket}/${joinKey(prefix, version)}`, { verify: true });
  loaded.model.dispose();
  const { current, etag } = await readCurrent(bucket, prefix);
  if (current?.version === version) throw new Error(`${version} is already current`);
  const next = nextCurrent(name, version, opts.reason ?? 'promoted by hand', manifestValAccuracy(loaded.manifest), current);
  await switchCurrent(bucket, prefix, next, etag);
  opts.log?.(`current -> ${version} (was ${current?.version ?? 'none'})`);
  return next;
}

/** Goes back to the newest verified version that was current before the live one. */
export async function rollback(target: string, opts: { log?: (l: string) => void } = {}): Promise<Current> {
  const { bucket, prefix, name } = parseModelTarget(target);
  const { current, etag } = await readCurrent(bucket, prefix);
  if (!current) throw new Error(`${target} has no current version`);
  if (current.history.length === 0) throw new Error(`${target}: ${current.version} is the first promoted version; nothing to roll back to`);
  let i = 0;
  while (i < current.history.length && !(await isVerified(bucket, joinKey(prefix, current.history[i].version)))) {
    opts.log?.(`skipping ${current.history[i].version}: no ${VERIFIED_MARKER}`);
    i++;
  }
  if (i === current.history.length) throw new Error(`${target}: no earlier version carries ${VERIFIED_MARKER}; nothing to roll back to`);
  const prev = current.history[i];
  const rest = current.history.slice(i + 1);
  const loaded = await loadModel(`s3://${bucket}/${joinKey(prefix, prev.version)}`, { verify: true });
  loaded.model.dispose();
  const next: Current = {
    schemaVersion: 1,
    name,
    version: prev.version,
    promotedAt: new Date().toISOString(),
    valAccuracy: prev.valAccuracy,
    reason: `rollback from ${current.version}`,
    history: rest,
  };
  await switchCurrent(bucket, prefix, next, etag);
  opts.log?.(`current -> ${prev.version} (rolled back from ${current.version})`);
  return next;
}
