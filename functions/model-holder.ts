// Holds the served model. Nothing here evaluates tfjs: a version with serving.onnx is served by
// onnxruntime from that file (core/model-loader.ts loadServing); any other is built as a tfjs layers
// model by functions/tfjs-serving.ts, imported on first need.
import type { LayersModel } from '@tensorflow/tfjs';
import { edgetuneConfig } from '../core/config.js';
import { availableCores } from '../core/engine/cpu.js';
import { type EnginePreference, enginePreference, type InferenceEngine, resolveEngine } from '../core/engine/engine.js';
import type { Manifest, Verification } from '../core/manifest.js';
import type { ServingLoad, ServingOnnxFiles } from '../core/model-loader.js';
import { decodeOpenSetStats, type OpenSetStats } from '../core/open-set-score.js';
import { maxAbsDiff, probabilityRows } from '../core/probability-rows.js';
import type { Logger } from './logger.js';
import type { HolderStatus } from './schemas.js';

/** Serving runs on onnxruntime-node where it loads (Node, Lambda), else on tfjs WASM (Lambda@Edge); `--engine` / EDGETUNE_ENGINE overrides. */
export const SERVING_ENGINE: EnginePreference = 'auto';
/** The store's loader contract (core/model-loader.ts); injectable so tests can make loads fail. */
export interface ModelSource {
  loadModel(
    uri: string,
    opts?: { verify?: boolean; sameWeightsVerification?: boolean },
  ): Promise<{ model: LayersModel; manifest: Manifest; uri: string; version: string; etag?: string; verification?: Verification }>;
  checkForUpdate(uri: string, knownEtag?: string): Promise<{ changed: false } | { changed: true; version: string; etag?: string }>;
  /** Opens a version without building it (core/model-loader.ts); sources without it are served through loadModel. */
  loadServing?(uri: string, opts?: { verify?: boolean; onnx?: boolean }): Promise<ServingLoad>;
}

export interface ServingModel {
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

export interface HolderOptions {
  refreshSeconds: number;
  log: Logger;
  source?: ModelSource;
  now?: () => number;
  /** Serving engine (core/engine): default `--engine` / EDGETUNE_ENGINE, else SERVING_ENGINE (auto). */
  engine?: EnginePreference;
  /** Starts the tfjs backend before a version is built as a layers model (the runtime's: its log and .wasm folder). */
  prepareTfjs?: () => Promise<void>;
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
              runtime: s.runtime,
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
      const pref = this.opts.engine ?? enginePreference(undefined, SERVING_ENGINE);
      const t0 = performance.now();
      const opened = await openVersion(source, uri, pref);
      if (current && opened.version === current.version) {
        opened.release?.();
        return;
      }
      const warn = (m: string, f: Record<string, unknown>) => log.warn(m, { ...ids, uri, ...f });
      const openSetStats = decodeOpenSet(opened.manifest);
      const needsAll = !!(opened.manifest.calibration || openSetStats);
      let loadMs = performance.now() - t0;
      let t1 = performance.now();
      let engine = opened.onnx ? await ortFromServingOnnx(opened.onnx, opened.manifest, needsAll, pref, warn) : undefined;
      if (!engine) {
        await this.opts.prepareTfjs?.();
        const t = performance.now();
        // onnxruntime can be checked against verification.json instead of a tfjs pass (see ortServing).
        const { model, verification } = await opened.loadLayers({ sameWeightsVerification: pref !== 'wasm' });
        loadMs += performance.now() - t;
        t1 = performance.now();
        const { ortServing, tfjsServing } = await import('./tfjs-serving.js');
        const size = opened.manifest.input.size;
        // A serving.onnx onnxruntime could not serve is not converted again: the same graph would fail the same way.
        engine =
          (opened.onnx ? undefined : await ortServing(model, size, needsAll, pref, warn, verification)) ??
          tfjsServing(model, size, needsAll, warn);
      }
      if (needsAll && !engine.predictAll) {
        log.warn('the model has calibration/open-set statistics but no logits or pooled layer: serving its plain probabilities', {
          ...ids,
          uri,
        });
      }
      const warmupMs = performance.now() - t1;
      const { setupMs, checkedAgainst, ...parts } = engine;
      const next: ServingModel = {
        ...parts,
        ...(openSetStats ? { openSetStats } : {}),
        manifest: opened.manifest,
        version: opened.version,
        etag: opened.etag,
        uri: opened.uri,
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

/** Max |difference| of onnxruntime's probabilities from tfjs' on the load-time check input, beyond which serving stays on tfjs. */
export const ORT_SERVING_TOLERANCE = 1e-4;
/** The same for logits and the pooled embedding, relative to the largest |value| (at least 1). */
export const ORT_FEATURE_TOLERANCE = 1e-4;

/** onnxruntime's intra-op threads for serving: EDGETUNE_ENGINE_THREADS, else up to 2. */
export function servingThreads(): number {
  return edgetuneConfig().EDGETUNE_ENGINE_THREADS ?? Math.min(2, availableCores());
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

type Opened = ServingLoad & { release?: () => void };

/** The version `uri` names, opened through the source's loadServing, or loaded at once through loadModel (sources without it). */
async function openVersion(source: ModelSource, uri: string, pref: EnginePreference): Promise<Opened> {
  if (source.loadServing) return source.loadServing(uri, { verify: true, onnx: pref !== 'wasm' });
  const loaded = await source.loadModel(uri, { verify: true, sameWeightsVerification: pref !== 'wasm' });
  const { model, verification, ...rest } = loaded;
  return {
    ...rest,
    loadLayers: async () => ({ model, ...(verification ? { verification } : {}) }),
    release: () => model.dispose(),
  };
}

/**
 * Serving on onnxruntime from serving.onnx, or undefined when the preference is wasm or onnxruntime
 * cannot serve it (said with `warn`; the caller then serves on tfjs): a session on the file's bytes,
 * checked against the tfjs probabilities its record holds (manifest.serving.check), warmed up.
 */
export async function ortFromServingOnnx(
  files: ServingOnnxFiles,
  manifest: Manifest,
  needsAll: boolean,
  pref: EnginePreference,
  warn: (msg: string, fields: Record<string, unknown>) => void,
): Promise<ServingEngine | undefined> {
  try {
    if ((await resolveEngine(pref)).name === 'wasm') return undefined;
  } catch (e) {
    warn('onnxruntime requested but not available; serving on tfjs', { error: (e as Error).message });
    return undefined;
  }
  const { record, bytes, checkPixels } = files;
  const outputs = record.onnx.outputs;
  const output = outputs[0];
  const all = needsAll && outputs.length === 3;
  let engine: InferenceEngine | undefined;
  try {
    const t0 = performance.now();
    const { ortEngineFromOnnx } = await import('../core/engine/ort-session.js');
    engine = await ortEngineFromOnnx(bytes, [...record.onnx.inputShape], servingThreads(), outputs);
    const ort = engine;
    const t1 = performance.now();
    const want = record.check.probabilities;
    const [probs] = await ort.run(checkPixels, record.check.images, [output]);
    const diff = maxAbsDiff(probabilityRows(probs.data, manifest.classes.length), want);
    if (!(diff <= ORT_SERVING_TOLERANCE)) throw new Error(`onnxruntime's probabilities differ from manifest.serving.check's by ${diff}`);
    const t2 = performance.now();
    const [h, w] = record.onnx.inputShape;
    await ort.run(new Float32Array(h * w * 3), 1);
    const ms = (a: number, b: number) => Math.round(b - a);
    return {
      setupMs: { session: ms(t0, t1), check: ms(t1, t2), warmUp: ms(t2, performance.now()) },
      checkedAgainst: `manifest.serving.check (${record.check.images} verification.json images), max |dp| ${diff.toExponential(2)}`,
      ...ortPredictors(ort, output, all),
      engine: 'fused',
      runtime: `${ort.description}, from ${record.onnx.file} (${record.onnx.weights} weights)`,
      dispose: () => void ort.dispose(),
    };
  } catch (e) {
    if (engine) await engine.dispose();
    warn(`onnxruntime could not serve ${record.onnx.file}; serving on tfjs`, { error: (e as Error).message });
    return undefined;
  }
}

/** `predict` (the model output) and, with `all`, `predictAll` (all three outputs) over an onnxruntime engine. */
export function ortPredictors(ort: InferenceEngine, output: string, all: boolean): Pick<ServingModel, 'predict' | 'predictAll'> {
  return {
    predict: async (px, n) => (await ort.run(px, n, [output]))[0].data,
    ...(all
      ? {
          predictAll: async (px: Float32Array, n: number) => {
            const [p, z, e] = await ort.run(px, n);
            return [p.data, z.data, e.data] as [Float32Array, Float32Array, Float32Array];
          },
        }
      : {}),
  };
}
