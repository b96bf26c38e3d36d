import { HEAD } from '../core/classifier.js';
import { type EngineName, type EnginePreference, enginePreference, resolveEngine } from '../core/engine/engine.js';
import type { RgbImage } from '../core/image.js';
import type { LayersModel } from '../core/tf.js';
import { tf } from '../core/tf.js';
import { type AugmentDraw, applyAugmentation } from './augment.js';
import { fromFloat16 } from './workers/boundary-float16.js';
import { type BoundaryPool, createBoundaryPool } from './workers/boundary-pool.js';
import type { BoundaryJob, OutputRequest } from './workers/boundary-runner.js';

/** Activations of many images at one layer, rows of `dim` values each (float32, or float16 bits). */
export interface FeatureBlock {
  data: Float32Array | Uint16Array;
  /** Shape of one row, e.g. [14, 14, 576] or [1280]. */
  shape: number[];
  rows: number;
}

export interface FeatureExtractor {
  readonly description: string;
  compute(
    images: readonly RgbImage[],
    draws: readonly (AugmentDraw | null)[],
    layer: string,
    onProgress?: (done: number) => void,
  ): Promise<FeatureBlock>;
  /**
   * Several layers of the same views in one pass (one block per layer, in `layers` order), each
   * equal to what `compute` returns for that layer alone.
   */
  computeLayers(
    images: readonly RgbImage[],
    draws: readonly (AugmentDraw | null)[],
    layers: readonly string[],
    onProgress?: (done: number) => void,
  ): Promise<FeatureBlock[]>;
  close(): Promise<void>;
}

/** Pixels of one view: the augmented image, or the decoded image as floats. */
export function viewPixels(img: RgbImage, draw: AugmentDraw | null): Float32Array {
  return draw ? applyAugmentation(img, draw) : Float32Array.from(img.data);
}

/** `compute` is `computeLayers` for one layer; implementations provide `computeLayers` only. */
export abstract class LayerExtractor implements FeatureExtractor {
  abstract readonly description: string;

  abstract computeLayers(
    images: readonly RgbImage[],
    draws: readonly (AugmentDraw | null)[],
    layers: readonly string[],
    onProgress?: (done: number) => void,
  ): Promise<FeatureBlock[]>;

  abstract close(): Promise<void>;

  async compute(
    images: readonly RgbImage[],
    draws: readonly (AugmentDraw | null)[],
    layer: string,
    onProgress?: (done: number) => void,
  ): Promise<FeatureBlock> {
    const [block] = await this.computeLayers(images, draws, [layer], onProgress);
    return block;
  }
}

function checkDistinct(layers: readonly string[]): void {
  if (layers.length === 0 || new Set(layers).size !== layers.length) throw new Error('computeLayers: give distinct layers');
}

/**
 * Runs the frozen layers in this thread, in inference mode, through a sub-model of the classifier.
 * The simple reference path; the worker pool is the fast one.
 */
export class InProcessExtractor extends LayerExtractor {
  readonly description = 'in-process (1 thread)';
  private readonly subModels = new Map<string, LayersModel>();

  constructor(
    private readonly model: LayersModel,
    private readonly batchSize = 16,
  ) {
    super();
  }

  /** A sub-model with one output per layer: predict runs the shared layers once. */
  private sub(layers: readonly string[]): LayersModel {
    const key = layers.join('\n');
    let m = this.subModels.get(key);
    if (!m) {
      m = tf.model({ inputs: this.model.inputs, outputs: layers.map((l) => this.model.getLayer(l).output as tf.SymbolicTensor) });
      this.subModels.set(key, m);
    }
    return m;
  }

  async computeLayers(
    images: readonly RgbImage[],
    draws: readonly (AugmentDraw | null)[],
    layers: readonly string[],
    onProgress?: (done: number) => void,
  ): Promise<FeatureBlock[]> {
    checkDistinct(layers);
    const sub = this.sub(layers);
    const blocks = sub.outputs.map((o) => {
      const shape = (o.shape as number[]).slice(1);
      const dim = shape.reduce((a, b) => a * b, 1);
      return { data: new Float32Array(images.length * dim), shape, rows: images.length, dim };
    });
    const size = images[0]?.width ?? 0;
    for (let start = 0; start < images.length; start += this.batchSize) {
      const end = Math.min(images.length, start + this.batchSize);
      const px = new Float32Array((end - start) * size * size * 3);
      for (let i = start; i < end; i++) px.set(viewPixels(images[i], draws[i]), (i - start) * size * size * 3);
      const outs = tf.tidy(() => {
        const y = sub.predict(tf.tensor4d(px, [end - start, size, size, 3]));
        return Array.isArray(y) ? y : [y];
      });
      for (const [k, out] of outs.entries()) blocks[k].data.set(await out.data(), start * blocks[k].dim);
      tf.dispose(outs);
      onProgress?.(end);
    }
    return blocks.map(({ data, shape, rows }) => ({ data, shape, rows }));
  }

  async close(): Promise<void> {
    this.subModels.clear();
  }
}

/** Training's frozen layers run on onnxruntime when it loads, else on tfjs WASM (`--engine` / EDGETUNE_ENGINE overrides). */
export const TRAINING_ENGINE: EnginePreference = 'auto';

/** The engine of training's frozen-layer workers, and why onnxruntime is not used when auto falls back. */
export function trainingEngine(explicit?: EnginePreference): Promise<{ name: EngineName; reason?: string }> {
  return resolveEngine(enginePreference(explicit, TRAINING_ENGINE));
}

/**
 * The fast path: the frozen layers run in worker threads (one engine instance per core: onnxruntime
 * or tfjs WASM, BatchNorm folded, fused kernels). Boundary activations come back as float16, halving
 * the cache; pooled features are averaged here from `out_relu` in float32.
 */
export class PoolExtractor extends LayerExtractor {
  private pool: BoundaryPool | undefined;
  private poolLayers: string[] = [];
  private starting: Promise<BoundaryPool> | undefined;
  private started = 0;
  description = '';

  /** How many worker pools this extractor has started (each start loads the weights in every worker). */
  get poolStarts(): number {
    return this.started;
  }

  constructor(
    private readonly opts: {
      artifacts: tf.io.ModelArtifacts;
      alpha: number;
      inputSize: number;
      workers: number;
      /** Default `--engine` / EDGETUNE_ENGINE, else TRAINING_ENGINE (auto). */
      engine?: EnginePreference;
    },
    private readonly imagesPerJob = 4,
  ) {
    super();
  }

  /**
   * A pool whose workers can return every one of `baseLayers`. A pool started for other layers is
   * replaced by one for both sets; ask for all layers of a run in the first call to never restart.
   */
  private async poolFor(baseLayers: readonly string[]): Promise<BoundaryPool> {
    // Concurrent calls (two chunks of a pass in flight) share one start.
    while (this.starting) await this.starting.catch(() => {});
    if (this.pool && baseLayers.every((l) => this.poolLayers.includes(l))) return this.pool;
    this.starting = this.startPool(baseLayers);
    try {
      return await this.starting;
    } finally {
      this.starting = undefined;
    }
  }

  private async startPool(baseLayers: readonly string[]): Promise<BoundaryPool> {
    const layers = [...new Set([...this.poolLayers, ...baseLayers])];
    await this.pool?.close();
    this.pool = undefined;
    const engine = await trainingEngine(this.opts.engine);
    this.pool = await createBoundaryPool({
      engine: engine.name,
      weights: this.opts.artifacts,
      alpha: this.opts.alpha,
      inputSize: this.opts.inputSize,
      boundaryLayer: layers[0],
      extraLayers: layers.slice(1),
      workers: this.opts.workers,
      // Enough jobs queued per worker that it keeps going while the main thread trains. A whole
      // epoch queued at once (as before) copies every job's pixels into the workers up front: the
      // default alpha 0.35 run peaked about 80 MiB higher with it, and was no faster.
      inFlight: 8,
    });
    this.poolLayers = layers;
    this.started++;
    this.description = engine.reason ? `${this.pool.backend} (onnxruntime-node not used: ${engine.reason})` : this.pool.backend;
    return this.pool;
  }

  async computeLayers(
    images: readonly RgbImage[],
    draws: readonly (AugmentDraw | null)[],
    layers: readonly string[],
    onProgress?: (done: number) => void,
  ): Promise<FeatureBlock[]> {
    checkDistinct(layers);
    // Pooled features are averaged here from `out_relu` in float32; other layers come as float16.
    const baseLayers = layers.map((l) => (l === HEAD.pool ? 'out_relu' : l));
    const outputs: OutputRequest[] = baseLayers.map((l) => ({ layer: l, dtype: l === 'out_relu' ? 'float32' : 'float16' }));
    const pool = await this.poolFor(baseLayers);
    const jobs: BoundaryJob[] = [];
    const px = images[0].data.length;
    for (let s = 0; s < images.length; s += this.imagesPerJob) {
      const part = images.slice(s, s + this.imagesPerJob);
      const pixels = new Uint8Array(part.length * px);
      for (const [i, im] of part.entries()) pixels.set(im.data, i * px);
      const v = draws.slice(s, s + part.length);
      jobs.push({ pixels, views: v.every((d) => d === null) ? null : v, outputs });
    }
    const results = await pool.run(jobs, (done) => onProgress?.(done));
    return layers.map((layer, k) => {
      const parts = results.map((r) => r.outputs[k]);
      const [h, w, c] = pool.rowShapes[baseLayers[k]];
      if (layer === HEAD.pool) {
        const data = new Float32Array(images.length * c);
        let row = 0;
        for (const r of parts) {
          const a = r.data as Float32Array;
          for (let i = 0; i < r.shape[0]; i++, row++) {
            const base = i * h * w * c;
            for (let p = 0; p < h * w; p++) for (let ch = 0; ch < c; ch++) data[row * c + ch] += a[base + p * c + ch];
            for (let ch = 0; ch < c; ch++) data[row * c + ch] /= h * w;
          }
        }
        return { data, shape: [c], rows: images.length };
      }
      const data = new Uint16Array(images.length * h * w * c);
      let o = 0;
      for (const r of parts) {
        data.set(r.data as Uint16Array, o);
        o += r.data.length;
      }
      return { data, shape: [h, w, c], rows: images.length };
    });
  }

  async close(): Promise<void> {
    await this.pool?.close();
    this.pool = undefined;
  }
}

/** Rows `idx` of a block as one float32 batch. */
export function gatherRows(block: FeatureBlock, idx: readonly number[]): Float32Array {
  const dim = block.shape.reduce((a, b) => a * b, 1);
  const out = new Float32Array(idx.length * dim);
  for (const [r, k] of idx.entries()) {
    const row = block.data.subarray(k * dim, (k + 1) * dim);
    if (row instanceof Float32Array) out.set(row, r * dim);
    else fromFloat16(row, out.subarray(r * dim, (r + 1) * dim));
  }
  return out;
}

/** Pooled features are always float32. */
export function float32Rows(block: FeatureBlock): Float32Array {
  if (!(block.data instanceof Float32Array)) throw new Error('expected float32 features');
  return block.data;
}
