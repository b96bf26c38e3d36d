import os from 'node:os';
import type { LayersModel, Tensor } from '@tensorflow/tfjs';
import { HEAD } from '../core/classifier.js';
import { edgetuneConfig } from '../core/config.js';
import { createEngine, type EnginePreference, enginePreference, type InferenceEngine, resolveEngine } from '../core/engine/engine.js';
import { createFastForward } from '../core/fast-forward.js';
import type { Manifest } from '../core/manifest.js';
import { decodeOpenSetStats, type OpenSetStats } from '../core/open-set-score.js';
import { tf } from '../core/tf.js';
import type { Logger } from './logger.js';
import type { HolderStatus } from './schemas.js';

/** The store's loader contract (core/model-loader.ts); injectable so tests can make loads fail. */
export interface ModelSource {
  loadModel(
    uri: string,
    opts?: { verify?: boolean },
  ): Promise<{ model: LayersModel; manifest: Manifest; uri: string; version: string; etag?: string }>;
  checkForUpdate(uri: string, knownEtag?: string): Promise<{ changed: false } | { changed: true; version: string; etag?: string }>;
}

export interface ServingModel {
  model: LayersModel;
  /** [N,S,S,3] RGB 0..255 -> probabilities on tfjs; the fused executor when it reproduces model.predict. */
  forward: (x: Tensor) => Tensor;
  /** [n,S,S,3] RGB 0..255 pixels -> the model's output rows, on the serving engine (tfjs or onnxruntime). */
  predict: Predict;
  /** The fused graph (on tfjs or onnxruntime: see `runtime`) or model.predict. */
  engine: 'fused' | 'layers';
  /** What runs `predict`, e.g. `tfjs wasm` or `onnxruntime-node 1.23.2 (CPU, 2 intra-op threads), ...`. */
  runtime: string;
  /**
   * One pass, three outputs: [probabilities, logits, pooled embedding]; only for graphs that have the
   * classifier's `logits` and pooled layers (what calibration and the open-set score need).
   */
  forwardAll?: (x: Tensor) => Tensor[];
  /** The manifest's open-set class means, decoded at load (unit rows, classes x dim). */
  openSetMeans?: OpenSetStats;
  /** Frees the model and any fused weights. */
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
      const t0 = performance.now();
      const loaded = await source.loadModel(uri, { verify: true });
      const loadMs = performance.now() - t0;
      if (current && loaded.version === current.version) {
        loaded.model.dispose();
        return;
      }
      const t1 = performance.now();
      const size = loaded.manifest.input.size;
      const warn = (m: string, f: Record<string, unknown>) => log.warn(m, { ...ids, uri, ...f });
      const openSetMeans = decodeMeans(loaded.manifest);
      const tfjs = chooseEngine(loaded.model, size, warn);
      warmUp(tfjs.forward, size);
      if (tfjs.forwardAll) warmUp((x) => (tfjs.forwardAll as (x: Tensor) => Tensor[])(x)[0], size);
      if ((loaded.manifest.calibration || openSetMeans) && !tfjs.forwardAll) {
        log.warn('the model has calibration/open-set statistics but no logits or pooled layer: serving its plain probabilities', {
          ...ids,
          uri,
        });
      }
      // Calibrated / open-set scores come from tfjs' forwardAll (the ONNX graph has no logits or pooled
      // output yet): converting such a model for onnxruntime would only cost load time and memory.
      const scoredOnTfjs = !!tfjs.forwardAll && !!(loaded.manifest.calibration || openSetMeans);
      const engine = await withServingEngine(
        tfjs,
        loaded.model,
        size,
        scoredOnTfjs ? 'wasm' : (this.opts.engine ?? enginePreference()),
        warn,
      );
      const warmupMs = performance.now() - t1;
      const next: ServingModel = {
        model: loaded.model,
        ...engine,
        ...(openSetMeans ? { openSetMeans } : {}),
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

/**
 * Uses core/fast-forward (BatchNorm folded into convs, ReLU6 fused: ~2-4x faster on WASM) when it
 * builds for this graph and reproduces model.predict on a random input; else model.predict.
 * EDGETUNE_FAST_FORWARD=0 turns it off.
 */
export function chooseEngine(
  model: LayersModel,
  size: number,
  warn: (msg: string, fields: Record<string, unknown>) => void,
): Pick<ServingModel, 'forward' | 'forwardAll' | 'engine' | 'dispose'> & { runtime: string } {
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

/** Max |difference| of onnxruntime's output from tfjs' on the load-time check input, beyond which serving stays on tfjs. */
export const ORT_SERVING_TOLERANCE = 1e-4;

/**
 * Adds `predict` on the chosen engine. On onnxruntime the fused graph is converted to ONNX at load,
 * in memory (a published model.onnx is not read), checked against the tfjs path on a seeded input,
 * and warmed up; when onnxruntime cannot load, the graph does not convert or the outputs differ,
 * serving stays on tfjs and says why.
 */
export async function withServingEngine(
  tfjs: ReturnType<typeof chooseEngine>,
  model: LayersModel,
  size: number,
  pref: EnginePreference,
  warn: (msg: string, fields: Record<string, unknown>) => void,
): Promise<Pick<ServingModel, 'forward' | 'forwardAll' | 'predict' | 'engine' | 'runtime' | 'dispose'>> {
  const onTfjs = { ...tfjs, predict: tfjsPredict(tfjs.forward, size) };
  let chosen: Awaited<ReturnType<typeof resolveEngine>>;
  try {
    chosen = await resolveEngine(pref);
  } catch (e) {
    warn('onnxruntime requested but not available; serving on tfjs', { error: (e as Error).message });
    return onTfjs;
  }
  if (chosen.name === 'wasm') return onTfjs;
  let engine: InferenceEngine | undefined;
  try {
    const threads = edgetuneConfig().EDGETUNE_ENGINE_THREADS ?? Math.min(2, os.availableParallelism?.() ?? os.cpus().length);
    engine = await createEngine(model, 'ort', { threads });
    const ort = engine;
    const x = tf.randomUniform([2, size, size, 3], 0, 255, 'float32', 11);
    const pixels = x.dataSync() as Float32Array;
    const ref = tf.tidy(() => tfjs.forward(x).dataSync() as Float32Array);
    x.dispose();
    const [got] = await ort.run(pixels, 2);
    let diff = 0;
    for (let i = 0; i < ref.length; i++) diff = Math.max(diff, Math.abs(ref[i] - got.data[i]));
    if (!(diff <= ORT_SERVING_TOLERANCE)) throw new Error(`onnxruntime output differs from tfjs by ${diff}`);
    await ort.run(new Float32Array(size * size * 3), 1);
    return {
      ...tfjs,
      predict: async (px, n) => (await ort.run(px, n))[0].data,
      runtime: `${ort.description}, converted at load from the fused graph`,
      dispose: () => {
        void ort.dispose();
        tfjs.dispose();
      },
    };
  } catch (e) {
    if (engine) await engine.dispose();
    warn('onnxruntime not used; serving on tfjs', { error: (e as Error).message });
    return onTfjs;
  }
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

/** The manifest's class means as float32 rows; a malformed field fails the load (the previous model keeps serving). */
function decodeMeans(m: Manifest): OpenSetStats | undefined {
  if (!m.openSet) return undefined;
  try {
    return decodeOpenSetStats(m.openSet, m.classes.length);
  } catch (e) {
    throw new Error(`manifest.openSet: ${(e as Error).message}`);
  }
}
