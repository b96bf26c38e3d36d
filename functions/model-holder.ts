import os from 'node:os';
import type { LayersModel, Tensor } from '@tensorflow/tfjs';
import { HEAD, toClassProbabilities } from '../core/classifier.js';
import { edgetuneConfig } from '../core/config.js';
import { createEngine, type EnginePreference, enginePreference, type InferenceEngine, resolveEngine } from '../core/engine/engine.js';
import { createFastForward } from '../core/fast-forward.js';
import type { Manifest, Verification } from '../core/manifest.js';
import { decodeOpenSetStats, type OpenSetStats } from '../core/open-set-score.js';
import { tf } from '../core/tf.js';
import type { Logger } from './logger.js';
import type { HolderStatus } from './schemas.js';

/** The store's loader contract (core/model-loader.ts); injectable so tests can make loads fail. */
export interface ModelSource {
  loadModel(
    uri: string,
    opts?: { verify?: boolean; sameWeightsVerification?: boolean },
  ): Promise<{ model: LayersModel; manifest: Manifest; uri: string; version: string; etag?: string; verification?: Verification }>;
  checkForUpdate(uri: string, knownEtag?: string): Promise<{ changed: false } | { changed: true; version: string; etag?: string }>;
}

export interface ServingModel {
  model: LayersModel;
  /** [n,S,S,3] RGB 0..255 pixels -> the model's output rows, on the serving engine (tfjs or onnxruntime). */
  predict: Predict;
  /**
   * One pass, three outputs on the serving engine: [probabilities, logits, pooled embedding]; only for
   * models whose manifest has a temperature or open-set statistics and whose graph has the classifier's
   * `logits` and pooled layers (what calibration and the open-set score need).
   */
  predictAll?: PredictAll;
  /** The fused graph (on tfjs or onnxruntime: see `runtime`) or model.predict. */
  engine: 'fused' | 'layers';
  /** What runs `predict`, e.g. `tfjs wasm` or `onnxruntime-node 1.23.2 (CPU, 2 intra-op threads), ...`. */
  runtime: string;
  /** The manifest's open-set statistics (class means and, for Mahalanobis, the covariance basis), decoded at load. */
  openSetStats?: OpenSetStats;
  /** Frees the model and any fused weights or onnxruntime session. */
  dispose: () => void;
  manifest: Manifest;
  version: string;
  etag?: string;
  uri: string;
  loadedAt: string;
  loadMs: number;
  warmupMs: number;
  /** Requests using this model right now; a retired model is disposed when this reaches 0. */
  inUse: number;
  retired: boolean;
}

export type Predict = (pixels: Float32Array, n: number) => Promise<Float32Array>;
export type PredictAll = (pixels: Float32Array, n: number) => Promise<[Float32Array, Float32Array, Float32Array]>;

/** What an engine adds to a loaded model. */
export type ServingEngine = Pick<ServingModel, 'predict' | 'predictAll' | 'engine' | 'runtime' | 'dispose'> & {
  /** Where the engine's set-up time went (logged with 'model loaded'). */
  setupMs?: Record<string, number>;
  /** What onnxruntime's outputs were checked against at load. */
  checkedAgainst?: string;
};

/** `predict` over a tfjs forward. */
export function tfjsPredict(forward: (x: Tensor) => Tensor, size: number): Predict {
  return async (pixels, n) => {
    const out = tf.tidy(() => forward(tf.tensor4d(pixels, [n, size, size, 3])));
    try {
      return (await out.data()) as Float32Array;
    } finally {
      out.dispose();
    }
  };
}

/** `predictAll` over a tfjs forward with the three outputs. */
export function tfjsPredictAll(forwardAll: (x: Tensor) => Tensor[], size: number): PredictAll {
  return async (pixels, n) => {
    const outs = tf.tidy(() => forwardAll(tf.tensor4d(pixels, [n, size, size, 3])));
    try {
      const [p, z, e] = (await Promise.all(outs.map((o) => o.data()))) as Float32Array[];
      return [p, z, e];
    } finally {
      tf.dispose(outs);
    }
  };
}

export interface HolderOptions {
  refreshSeconds: number;
  log: Logger;
  source?: ModelSource;
  now?: () => number;
  /** Serving engine (core/engine): default `--engine` / EDGETUNE_ENGINE, else wasm. */
  engine?: EnginePreference;
}

async function defaultSource(): Promise<ModelSource> {
  return import('../core/model-loader.js');
}

/**
 * Holds the model being served. Loads once, warms up with one prediction, then re-checks the
 * pointer at most every `refreshSeconds` (lazily, from requests, so it also works in a frozen
 * Lambda) and loads a new version in the background. The swap is a single reference assignment;
 * a failed load keeps the old model and is reported by `status()`.
 */
export class ModelHolder {
  private serving?: ServingModel;
  private inflight?: Promise<void>;
  private lastCheck = Number.NEGATIVE_INFINITY;
  private lastCheckIso?: string;
  private lastError?: HolderStatus['lastError'];
  private loading = false;
  private readonly now: () => number;

  constructor(
    readonly uri: string | undefined,
    private readonly opts: HolderOptions,
  ) {
    this.now = opts.now ?? Date.now;
  }

  /** Starts the first load; resolves when it has finished (successfully or not). */
  start(): Promise<void> {
    if (!this.uri) return Promise.resolve();
    return this.refresh();
  }

  /** Waits for any background load in progress (tests, graceful shutdown). */
  async settle(): Promise<void> {
    while (this.inflight) await this.inflight;
  }

  status(): HolderStatus {
    const s = this.serving;
    const state: HolderStatus['state'] = !this.uri ? 'unconfigured' : s ? 'ready' : this.loading ? 'loading' : 'failed';
    return {
      state,
      ...(s
        ? {
            model: {
              name: s.manifest.name,
              version: s.version,
              engine: s.engine,
              loadedAt: s.loadedAt,
              loadMs: s.loadMs,
              warmupMs: s.warmupMs,
            },
          }
        : {}),
      ...(this.lastCheckIso ? { lastCheckAt: this.lastCheckIso } : {}),
      ...(this.lastError ? { lastError: this.lastError } : {}),
    };
  }

  /** Kicks off a background check when the refresh interval has passed; never waits for it. */
  maybeRefresh(requestId?: string): void {
    if (!this.uri || this.inflight) return;
    if (this.now() - this.lastCheck < this.opts.refreshSeconds * 1000) return;
    void this.refresh(requestId);
  }

  /** Borrows the current model for one request; call the returned release() when done. */
  acquire(): { serving: ServingModel; release: () => void } | undefined {
    const s = this.serving;
    if (!s) return undefined;
    s.inUse++;
    let released = false;
    return {
      serving: s,
      release: () => {
        if (released) return;
        released = true;
        s.inUse--;
        if (s.retired && s.inUse === 0) s.dispose();
      },
    };
  }

  /** Disposes the model (process shutdown, tests). */
  dispose(): void {
    const s = this.serving;
    this.serving = undefined;
    if (s) {
      s.retired = true;
      if (s.inUse === 0) s.dispose();
    }
  }

  private refresh(requestId?: string): Promise<void> {
    if (this.inflight) return this.inflight;
    this.lastCheck = this.now();
    this.lastCheckIso = new Date(this.lastCheck).toISOString();
    const p = this.checkAndLoad(requestId).finally(() => {
      this.inflight = undefined;
    });
    this.inflight = p;
    return p;
  }

  private async checkAndLoad(requestId?: string): Promise<void> {
    const uri = this.uri!;
    const log = this.opts.log;
    const current = this.serving;
    const during = current ? 'refresh' : 'initial-load';
    const ids = requestId ? { requestId } : {};
    this.loading = true;
    try {
      const source = this.opts.source ?? (await defaultSource());
      if (current) {
        const check = await source.checkForUpdate(uri, current.etag);
        if (!check.changed || check.version === current.version) return;
        log.info('model update found', { ...ids, uri, from: current.version, to: check.version });
      }
      const pref = this.opts.engine ?? enginePreference();
      const t0 = performance.now();
      // onnxruntime can be checked against verification.json instead of a tfjs pass (see ortServing).
      const loaded = await source.loadModel(uri, { verify: true, sameWeightsVerification: pref !== 'wasm' });
      const loadMs = performance.now() - t0;
      if (current && loaded.version === current.version) {
        loaded.model.dispose();
        return;
      }
      const t1 = performance.now();
      const size = loaded.manifest.input.size;
      const warn = (m: string, f: Record<string, unknown>) => log.warn(m, { ...ids, uri, ...f });
      const openSetStats = decodeOpenSet(loaded.manifest);
      const needsAll = !!(loaded.manifest.calibration || openSetStats);
      const engine =
        (await ortServing(loaded.model, size, needsAll, pref, warn, loaded.verification)) ??
        tfjsServing(loaded.model, size, needsAll, warn);
      if (needsAll && !engine.predictAll) {
        log.warn('the model has calibration/open-set statistics but no logits or pooled layer: serving its plain probabilities', {
          ...ids,
          uri,
        });
      }
      const warmupMs = performance.now() - t1;
      const { setupMs, checkedAgainst, ...parts } = engine;
      const next: ServingModel = {
        model: loaded.model,
        ...parts,
        ...(openSetStats ? { openSetStats } : {}),
        manifest: loaded.manifest,
        version: loaded.version,
        etag: loaded.etag,
        uri: loaded.uri,
        loadedAt: new Date().toISOString(),
        loadMs: Math.round(loadMs),
        warmupMs: Math.round(warmupMs),
        inUse: 0,
        retired: false,
      };
      this.serving = next;
      this.lastError = undefined;
      if (current) {
        current.retired = true;
        if (current.inUse === 0) current.dispose();
      }
      log.info('model loaded', {
        ...ids,
        uri,
        name: next.manifest.name,
        version: next.version,
        engine: next.engine,
        runtime: next.runtime,
        loadMs: next.loadMs,
        warmupMs: next.warmupMs,
        ...(setupMs ? { setupMs, checkedAgainst } : {}),
      });
    } catch (e) {
      const message = (e as Error)?.message ?? String(e);
      this.lastError = { message, at: new Date().toISOString(), during };
      log.error(current ? 'model refresh failed; the previous version keeps serving' : 'model load failed', {
        ...ids,
        uri,
        error: message,
        ...(current ? { serving: current.version } : {}),
      });
    } finally {
      this.loading = false;
    }
  }
}

/** The tfjs forward passes of a served model. */
export interface TfjsForward {
  /** [N,S,S,3] RGB 0..255 -> the model's output: the fused executor when it reproduces model.predict. */
  forward: (x: Tensor) => Tensor;
  /** [probabilities, logits, pooled embedding] in one pass, when the graph has those layers. */
  forwardAll?: (x: Tensor) => Tensor[];
  engine: 'fused' | 'layers';
  runtime: string;
  dispose: () => void;
}

/**
 * Uses core/fast-forward (BatchNorm folded into convs, ReLU6 fused: ~2-4x faster on WASM) when it
 * builds for this graph and reproduces model.predict on a random input; else model.predict.
 * EDGETUNE_FAST_FORWARD=0 turns it off.
 */
export function chooseEngine(model: LayersModel, size: number, warn: (msg: string, fields: Record<string, unknown>) => void): TfjsForward {
  const runtime = `tfjs ${tf.getBackend()}`;
  const heads = hasHeadLayers(model);
  const multi = heads
    ? tf.model({
        inputs: model.inputs,
        outputs: [
          model.outputs[0],
          model.getLayer(HEAD.logits).output as tf.SymbolicTensor,
          model.getLayer(HEAD.pool).output as tf.SymbolicTensor,
        ],
      })
    : undefined;
  const layers = {
    forward: (x: Tensor) => model.predict(x) as Tensor,
    ...(multi ? { forwardAll: (x: Tensor) => multi.predict(x) as Tensor[] } : {}),
    engine: 'layers' as const,
    runtime,
    dispose: () => model.dispose(),
  };
  if (edgetuneConfig().EDGETUNE_FAST_FORWARD === '0') return layers;
  let ff: ReturnType<typeof createFastForward> | undefined;
  try {
    ff = createFastForward(model);
    const fused = ff;
    // Doubles as the warm-up of both paths (the caller's warm-up then finds the kernels ready).
    const diff = tf.tidy(() => {
      const x = tf.randomUniform([1, size, size, 3], 0, 255, 'float32', 7);
      return tf.max(tf.abs(tf.sub(model.predict(x) as Tensor, fused.forward(x)))).dataSync()[0];
    });
    if (!(diff <= 1e-3)) throw new Error(`fused output differs from model.predict by ${diff}`);
    const outputs = [fused.outputName, HEAD.logits, HEAD.pool];
    return {
      forward: (x) => fused.forward(x),
      ...(heads ? { forwardAll: (x: Tensor) => fused.forwardMany(x, { to: outputs }) } : {}),
      engine: 'fused',
      runtime,
      dispose: () => {
        fused.dispose();
        model.dispose();
      },
    };
  } catch (e) {
    ff?.dispose();
    warn('fused executor not used; serving with model.predict', { error: (e as Error).message });
    return layers;
  }
}

/** Max |difference| of onnxruntime's probabilities from tfjs' on the load-time check input, beyond which serving stays on tfjs. */
export const ORT_SERVING_TOLERANCE = 1e-4;
/** Photos of verification.json the load-time check runs. */
const VERIFICATION_CHECK_IMAGES = 2;
/** The same for logits and the pooled embedding, relative to the largest |value| (at least 1). */
export const ORT_FEATURE_TOLERANCE = 1e-4;

/** Serving on tfjs: the fused executor (or model.predict), warmed up. */
export function tfjsServing(
  model: LayersModel,
  size: number,
  needsAll: boolean,
  warn: (msg: string, fields: Record<string, unknown>) => void,
): ServingEngine {
  const tfjs = chooseEngine(model, size, warn);
  warmUp(tfjs.forward, size);
  const forwardAll = needsAll ? tfjs.forwardAll : undefined;
  if (forwardAll) warmUp((x) => forwardAll(x)[0], size);
  return {
    predict: tfjsPredict(tfjs.forward, size),
    ...(forwardAll ? { predictAll: tfjsPredictAll(forwardAll, size) } : {}),
    engine: tfjs.engine,
    runtime: tfjs.runtime,
    dispose: tfjs.dispose,
  };
}

/**
 * Serving on onnxruntime, or undefined when the preference is wasm or onnxruntime cannot serve this
 * model (said with `warn`; the caller then serves on tfjs). The fused graph is converted to ONNX at
 * load, in memory, with the logits and pooled embedding as extra outputs when scoring needs them,
 * checked against model.predict (tfjs) on a seeded input and warmed up. The tfjs fused executor is
 * not built on this path: nothing would run it.
 */
export async function ortServing(
  model: LayersModel,
  size: number,
  needsAll: boolean,
  pref: EnginePreference,
  warn: (msg: string, fields: Record<string, unknown>) => void,
  verification?: Verification,
): Promise<ServingEngine | undefined> {
  let chosen: Awaited<ReturnType<typeof resolveEngine>>;
  try {
    chosen = await resolveEngine(pref);
  } catch (e) {
    warn('onnxruntime requested but not available; serving on tfjs', { error: (e as Error).message });
    return undefined;
  }
  if (chosen.name === 'wasm') return undefined;
  const all = needsAll && hasHeadLayers(model);
  const output = model.outputLayers[0].name;
  const outputs = all ? [output, HEAD.logits, HEAD.pool] : [output];
  let engine: InferenceEngine | undefined;
  try {
    const threads = servingThreads();
    const t0 = performance.now();
    engine = await createEngine(model, 'ort', { threads, outputs });
    const ort = engine;
    const t1 = performance.now();
    const [vn, vh, vw] = verification?.shape ?? [0];
    const sameShape = !!verification && vn > 0 && vh === size && vw === size && verification.probabilities.length === vn;
    let t2: number;
    let checkedAgainst: string;
    if (sameShape && verification) {
      // verification.json's probabilities came from these very weights (the loader only gives it
      // then): real photos, and no tfjs pass, whose first run through the layers model is slow.
      // Two of its photos: each one costs a full-size inference here, at start-up.
      const k = Math.min(vn, VERIFICATION_CHECK_IMAGES);
      const pixels = Float32Array.from(Buffer.from(verification.pixels, 'base64').subarray(0, k * size * size * 3));
      t2 = performance.now();
      const [probs] = await ort.run(pixels, k, [output]);
      const got = toClassProbabilities(probs.data, verification.probabilities[0].length);
      let diff = 0;
      got.forEach((row, i) => {
        row.forEach((p, c) => {
          diff = Math.max(diff, Math.abs(p - verification.probabilities[i][c]));
        });
      });
      if (!(diff <= ORT_SERVING_TOLERANCE)) throw new Error(`onnxruntime's probabilities differ from verification.json's by ${diff}`);
      checkedAgainst = `verification.json (${k} images), max |dp| ${diff.toExponential(2)}`;
    } else {
      // One seeded image: the reference pass through the unfused layers model is the check's cost.
      const x = tf.randomUniform([1, size, size, 3], 0, 255, 'float32', 11);
      const pixels = x.dataSync() as Float32Array;
      const reference = all
        ? tf.model({ inputs: model.inputs, outputs: outputs.map((n) => model.getLayer(n).output as tf.SymbolicTensor) })
        : model;
      const ref = tf.tidy(() => {
        const y = reference.predict(x);
        return (Array.isArray(y) ? y : [y]).map((t) => t.dataSync() as Float32Array);
      });
      x.dispose();
      t2 = performance.now();
      const got = await ort.run(pixels, 1);
      let worst = 0;
      ref.forEach((r, k) => {
        let diff = 0;
        let scale = 1;
        for (let i = 0; i < r.length; i++) {
          diff = Math.max(diff, Math.abs(r[i] - got[k].data[i]));
          scale = Math.max(scale, Math.abs(r[i]));
        }
        const limit = k === 0 ? ORT_SERVING_TOLERANCE : ORT_FEATURE_TOLERANCE * scale;
        if (!(diff <= limit)) throw new Error(`onnxruntime's '${outputs[k]}' differs from tfjs by ${diff} (limit ${limit})`);
        worst = Math.max(worst, diff);
      });
      checkedAgainst = `tfjs model.predict (1 seeded image, ${outputs.length} outputs), max |d| ${worst.toExponential(2)}`;
    }
    const t3 = performance.now();
    await ort.run(new Float32Array(size * size * 3), 1);
    const ms = (a: number, b: number) => Math.round(b - a);
    return {
      setupMs: { convertAndSession: ms(t0, t1), reference: ms(t1, t2), check: ms(t2, t3), warmUp: ms(t3, performance.now()) },
      checkedAgainst,
      predict: async (px, n) => (await ort.run(px, n, [output]))[0].data,
      ...(all
        ? {
            predictAll: async (px: Float32Array, n: number) => {
              const [p, z, e] = await ort.run(px, n);
              return [p.data, z.data, e.data] as [Float32Array, Float32Array, Float32Array];
            },
          }
        : {}),
      engine: 'fused',
      runtime: `${ort.description}, converted at load from the fused graph`,
      dispose: () => {
        void ort.dispose();
        model.dispose();
      },
    };
  } catch (e) {
    if (engine) await engine.dispose();
    warn('onnxruntime not used; serving on tfjs', { error: (e as Error).message });
    return undefined;
  }
}

/** onnxruntime's intra-op threads for serving: EDGETUNE_ENGINE_THREADS, else up to 2. */
function servingThreads(): number {
  return edgetuneConfig().EDGETUNE_ENGINE_THREADS ?? Math.min(2, os.availableParallelism?.() ?? os.cpus().length);
}

/** One prediction at load, so the first request does not pay for WASM kernel setup. */
export function warmUp(forward: (x: Tensor) => Tensor, size: number): void {
  tf.tidy(() => {
    forward(tf.zeros([1, size, size, 3])).dataSync();
  });
}

function hasHeadLayers(model: LayersModel): boolean {
  const names = new Set(model.layers.map((l) => l.name));
  return names.has(HEAD.logits) && names.has(HEAD.pool);
}

/** The manifest's open-set statistics; a malformed field fails the load (the previous model keeps serving). */
function decodeOpenSet(m: Manifest): OpenSetStats | undefined {
  if (!m.openSet) return undefined;
  try {
    return decodeOpenSetStats(m.openSet, m.classes.length);
  } catch (e) {
    throw new Error(`manifest.openSet: ${(e as Error).message}`);
  }
}
