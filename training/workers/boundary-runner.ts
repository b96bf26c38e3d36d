// The boundary forward pass of one thread: decoded pixels (+ augmentation draws) -> activations at
// the freeze boundary through the fused executor. Workers of the pool each run one of these; it
// also runs in-process (workers: 0, tests, single-core machines).
import type { io, LayersModel } from '@tensorflow/tfjs';
import { createEngine, type EngineName, type InferenceEngine } from '../../core/engine/engine.js';
import { createWasmEngine } from '../../core/engine/wasm-engine.js';
import { buildMobileNetV2 } from '../../core/mobilenet-v2.js';
import { applyBaseWeights } from '../../core/weights/apply.js';
import { decodeTfjsWeights } from '../../core/weights/tfjs-source.js';
import type { WeightArray } from '../../core/weights/types.js';
import { type AugmentDraw, applyAugmentation } from '../augment.js';
import { toFloat16 } from './boundary-float16.js';

export const DEFAULT_BOUNDARY = 'block_13_expand_relu';

export type BoundaryDtype = 'float16' | 'float32';

/** Weights by Keras name (`Conv1/kernel`, ...): a base, a base with top, or a whole classifier. */
export interface BoundaryWeights {
  weightSpecs: io.WeightsManifestEntry[];
  weightData: ArrayBuffer;
}

export interface BoundaryModelOptions {
  alpha: number;
  inputSize: number;
  /** Layer of the Keras base whose output is returned. Default `block_13_expand_relu`. */
  boundaryLayer?: string;
  /**
   * Further base layers a job may ask for (`BoundaryJob.outputs`), e.g. `out_relu` for pooled
   * features: one pass through the network yields them all.
   */
  extraLayers?: string[];
}

/** One output a job asks for: a layer of the runner and its encoding. */
export interface OutputRequest {
  layer: string;
  dtype: BoundaryDtype;
}

export interface BoundaryJob {
  /** HWC RGB 0..255 of one or more images at inputSize x inputSize, back to back. */
  pixels: Uint8Array;
  /**
   * One draw per output: null = the images unaugmented (one output per image). With one image,
   * every draw is a view of it; with n images, `views` must have n draws (draw i for image i);
   * a null entry leaves that view unaugmented.
   */
  views: (AugmentDraw | null)[] | null;
  /** Layers to return (the boundary and/or `extraLayers`); default: the boundary layer in the run's dtype. */
  outputs?: OutputRequest[];
}

export interface LayerOutput {
  layer: string;
  /** Activations of every output of the job, row after row: float16 bits or float32. */
  data: Uint16Array | Float32Array;
  dtype: BoundaryDtype;
  /** [outputs, h, w, c]. */
  shape: [number, number, number, number];
}

/** The first requested layer's activations, and every requested layer in `outputs` (in request order). */
export interface BoundaryOutput extends Omit<LayerOutput, 'layer'> {
  outputs: LayerOutput[];
}

/** The distinct buffers of an output, for a transfer list. */
export function outputBuffers(out: BoundaryOutput): ArrayBuffer[] {
  return [...new Set(out.outputs.map((o) => o.data.buffer as ArrayBuffer))];
}

/** The (image index, draw) pairs a job asks for, validated. */
export function jobViews(job: BoundaryJob, inputSize: number): { images: number; views: [number, AugmentDraw | null][] } {
  const imageBytes = inputSize * inputSize * 3;
  if (!(job.pixels instanceof Uint8Array) || job.pixels.length === 0 || job.pixels.length % imageBytes !== 0) {
    throw new Error(
      `boundary job: pixels must be a Uint8Array of whole ${inputSize}x${inputSize}x3 images; got ${job.pixels?.length} bytes`,
    );
  }
  const images = job.pixels.length / imageBytes;
  if (!job.views) return { images, views: Array.from({ length: images }, (_, i) => [i, null]) };
  if (images === 1) return { images, views: job.views.map((d) => [0, d]) };
  if (job.views.length !== images) {
    throw new Error(`boundary job: ${images} images need ${images} views (or none); got ${job.views.length}`);
  }
  return { images, views: job.views.map((d, i) => [i, d]) };
}

/** The base weights of a serialized model (tfjs weight specs + data), keyed `<layer>/<weight>`. */
export function namedWeights(weights: BoundaryWeights): Map<string, WeightArray> {
  return decodeTfjsWeights(new Uint8Array(weights.weightData), weights.weightSpecs);
}

/** Builds the Keras base for alpha/inputSize and sets its weights by name from `weights`. */
export function baseFromWeights(weights: BoundaryWeights, opts: BoundaryModelOptions): LayersModel {
  const base = buildMobileNetV2({ alpha: opts.alpha, inputSize: opts.inputSize });
  try {
    applyBaseWeights(base, namedWeights(weights), 'the boundary weights');
  } catch (e) {
    base.dispose();
    throw e;
  }
  return base;
}

export interface BoundaryRunner {
  /** Shape of one boundary row, [h, w, c]. */
  readonly rowShape: [number, number, number];
  /** Row shape of every layer the runner can return (the boundary and `extraLayers`). */
  readonly rowShapes: Record<string, [number, number, number]>;
  /** The inference engine computing the activations, e.g. `onnxruntime-node 1.23.2 (CPU, 1 intra-op thread)`. */
  readonly engine: string;
  run(job: BoundaryJob, dtype?: BoundaryDtype): Promise<BoundaryOutput>;
  dispose(): void;
}

/**
 * In-thread boundary forward on the tfjs fused executor; `batchSize` views go through the network at
 * once. A job asking for several layers runs the network once: a deeper layer continues from a
 * shallower one's activations when that is exactly the computation a forward from the input would do
 * (same fused steps), else it is computed from the input, so every output equals its single-layer
 * run bit for bit (core/engine/wasm-engine.ts).
 */
export function createBoundaryRunner(weights: BoundaryWeights, opts: BoundaryModelOptions & { batchSize?: number }): BoundaryRunner {
  const layers = runnerLayers(opts);
  const model = baseFromWeights(weights, opts);
  let engine: InferenceEngine;
  try {
    engine = createWasmEngine(model, { outputs: layers });
  } finally {
    // The executor holds its own folded weights: the layers model is no longer needed.
    model.dispose();
  }
  return runnerOver(engine, opts);
}

/** The boundary runner on `engine` (wasm or ort, core/engine); onnxruntime runs `threads` intra-op threads. */
export async function createEngineBoundaryRunner(
  weights: BoundaryWeights,
  opts: BoundaryModelOptions & { batchSize?: number; engine: EngineName; threads?: number },
): Promise<BoundaryRunner> {
  if (opts.engine === 'wasm') return createBoundaryRunner(weights, opts);
  const model = baseFromWeights(weights, opts);
  let engine: InferenceEngine;
  try {
    engine = await createEngine(model, opts.engine, { outputs: runnerLayers(opts), threads: opts.threads, float16Outputs: true });
  } finally {
    model.dispose();
  }
  return runnerOver(engine, opts);
}

function runnerLayers(opts: BoundaryModelOptions): string[] {
  return [...new Set([opts.boundaryLayer ?? DEFAULT_BOUNDARY, ...(opts.extraLayers ?? [])])];
}

function runnerOver(engine: InferenceEngine, opts: BoundaryModelOptions & { batchSize?: number }): BoundaryRunner {
  const boundary = opts.boundaryLayer ?? DEFAULT_BOUNDARY;
  const layers = runnerLayers(opts);
  const rowShapes: Record<string, [number, number, number]> = {};
  for (const l of layers) rowShapes[l] = engine.outputShapes[l] as [number, number, number];
  const size = opts.inputSize;
  const batchSize = Math.max(1, opts.batchSize ?? 4);
  const rowLen = (l: string) => rowShapes[l][0] * rowShapes[l][1] * rowShapes[l][2];
  const imageBytes = size * size * 3;
  return {
    rowShape: rowShapes[boundary],
    rowShapes,
    engine: engine.description,
    async run(job, dtype = 'float16') {
      const { views } = jobViews(job, size);
      const requests = job.outputs ?? [{ layer: boundary, dtype }];
      if (requests.length === 0) throw new Error('boundary job: outputs is empty');
      for (const r of requests) {
        if (!rowShapes[r.layer]) throw new Error(`boundary job: layer '${r.layer}' is not one of this runner's (${layers.join(', ')})`);
      }
      if (new Set(requests.map((r) => r.layer)).size !== requests.length) throw new Error('boundary job: a layer is requested twice');
      const n = views.length;
      const outputs: LayerOutput[] = requests.map((r) => ({
        layer: r.layer,
        dtype: r.dtype,
        data: r.dtype === 'float16' ? new Uint16Array(n * rowLen(r.layer)) : new Float32Array(n * rowLen(r.layer)),
        shape: [n, ...rowShapes[r.layer]],
      }));
      const only = requests.map((r) => r.layer);
      const half = requests.filter((r) => r.dtype === 'float16').map((r) => r.layer);
      for (let start = 0; start < n; start += batchSize) {
        const end = Math.min(n, start + batchSize);
        const px = new Float32Array((end - start) * imageBytes);
        for (let v = start; v < end; v++) {
          const [img, draw] = views[v];
          const data = job.pixels.subarray(img * imageBytes, (img + 1) * imageBytes);
          const offset = (v - start) * imageBytes;
          if (draw) applyAugmentation({ data, width: size, height: size }, draw, px, offset);
          else px.set(data, offset);
        }
        // One pass through the network for every layer the job asks for; an engine that converts
        // to float16 in its graph (ort) returns those layers ready.
        const values = engine.runMixed ? await engine.runMixed(px, end - start, only, half) : await engine.run(px, end - start, only);
        for (const [k, o] of outputs.entries()) {
          const got = values[k].data;
          const len = rowLen(o.layer);
          if (o.data instanceof Uint16Array && got instanceof Float32Array) {
            toFloat16(got, o.data.subarray(start * len, end * len) as Uint16Array<ArrayBuffer>);
          } else if (o.data instanceof Uint16Array === got instanceof Uint16Array) {
            o.data.set(got, start * len);
          } else {
            throw new Error(`boundary runner: ${o.layer} came back as ${got.constructor.name}, expected ${o.dtype}`);
          }
        }
      }
      const [first] = outputs;
      return { data: first.data, dtype: first.dtype, shape: first.shape, outputs };
    },
    dispose() {
      void engine.dispose();
    },
  };
}
