// The tfjs-free half of the boundary forward pass: jobs, outputs, and the runner over an inference
// engine (pixels + augmentation draws -> activations). The ort workers load only this and
// core/engine/ort-session.ts, never tfjs; boundary-runner.ts builds the tfjs side.
import type { io } from '@tensorflow/tfjs';
import type { InferenceEngine } from '../../core/engine/engine.js';
import { ortEngineFromOnnx } from '../../core/engine/ort-session.js';
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
 * The boundary runner on onnxruntime from the frozen layers' ONNX (boundary-runner.ts `boundaryOnnx`),
 * `threads` intra-op threads; loads no tfjs.
 */
export async function createOrtBoundaryRunner(
  onnx: Uint8Array,
  opts: BoundaryModelOptions & { batchSize?: number; threads?: number },
): Promise<BoundaryRunner> {
  const engine = await ortEngineFromOnnx(onnx, [opts.inputSize, opts.inputSize, 3], opts.threads, runnerLayers(opts));
  return runnerOver(engine, opts);
}

/** Every layer the runner returns: the boundary first, then `extraLayers`. */
export function runnerLayers(opts: BoundaryModelOptions): string[] {
  return [...new Set([opts.boundaryLayer ?? DEFAULT_BOUNDARY, ...(opts.extraLayers ?? [])])];
}

/** The boundary runner over `engine` (either kind): augmentation into batches of `batchSize` views, every requested layer from one pass. */
export function runnerOver(engine: InferenceEngine, opts: BoundaryModelOptions & { batchSize?: number }): BoundaryRunner {
  const boundary = opts.boundaryLayer ?? DEFAULT_BOUNDARY;
  const layers = runnerLayers(opts);
  const rowShapes: Record<string, [number, number, number]> = {};
  for (const l of layers) rowShapes[l] = engine.outputShapes[l] as [number, number, number];
  const size = opts.inputSize;
  const batchSize = Math.max(1, opts.batchSize ?? 4);
  const rowLen = (l: string) => rowShapes[l][0] * rowShapes[l][1] * rowShapes[l][2];
  const imageBytes = size * size * 3;
  // The batch's float32 pixels, reused from run to run (every value is written anew): a fresh batch
  // per call left megabytes of garbage per job in a worker until its next GC. A run that finds it
  // taken (runs overlapping) uses its own.
  let spare: Float32Array | undefined;
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
      const batch = spare ?? new Float32Array(batchSize * imageBytes);
      spare = undefined;
      try {
        for (let start = 0; start < n; start += batchSize) {
          const end = Math.min(n, start + batchSize);
          const px = end - start === batchSize ? batch : batch.subarray(0, (end - start) * imageBytes);
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
      } finally {
        spare = batch;
      }
      const [first] = outputs;
      return { data: first.data, dtype: first.dtype, shape: first.shape, outputs };
    },
    dispose() {
      void engine.dispose();
    },
  };
}
