// The boundary forward pass of one thread: decoded pixels (+ augmentation draws) -> activations at
// the freeze boundary through the fused executor. Workers of the pool each run one of these; it
// also runs in-process (workers: 0, tests, single-core machines).
import type { io, LayersModel } from '@tensorflow/tfjs';
import { createFastForward, type FastForward } from '../../core/fast-forward.js';
import { buildMobileNetV2 } from '../../core/mobilenet-v2.js';
import { tf } from '../../core/tf.js';
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
}

export interface BoundaryOutput {
  /** Activations of every output of the job, row after row: float16 bits or float32. */
  data: Uint16Array | Float32Array;
  dtype: BoundaryDtype;
  /** [outputs, h, w, c]. */
  shape: [number, number, number, number];
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

/**
 * Sets every weight of `model` whose Keras name (`Conv1/kernel`...) is in `weights`; layers listed in
 * `skip` (e.g. a fresh classifier head) are left as they are. Missing or mis-shaped weights throw.
 */
export function setWeightsByName(model: LayersModel, weights: BoundaryWeights, skip: ReadonlySet<string> = new Set()): void {
  const named = tf.io.decodeWeights(weights.weightData, weights.weightSpecs);
  try {
    for (const layer of model.layers) {
      if (layer.weights.length === 0 || skip.has(layer.name)) continue;
      const values = layer.weights.map((w) => {
        const t = named[w.originalName];
        if (!t) throw new Error(`weights: no '${w.originalName}' among ${weights.weightSpecs.length} weights`);
        if (t.shape.join() !== w.shape.join()) {
          throw new Error(`weights: '${w.originalName}' has shape [${t.shape}], the model needs [${w.shape}] (another alpha?)`);
        }
        return t;
      });
      layer.setWeights(values);
    }
  } finally {
    tf.dispose(Object.values(named));
  }
}

/** Builds the Keras base for alpha/inputSize and sets its weights by name from `weights`. */
export function baseFromWeights(weights: BoundaryWeights, opts: BoundaryModelOptions): LayersModel {
  const base = buildMobileNetV2({ alpha: opts.alpha, inputSize: opts.inputSize });
  try {
    setWeightsByName(base, weights);
  } catch (e) {
    base.dispose();
    throw e;
  }
  return base;
}

export interface BoundaryRunner {
  /** Shape of one output row, [h, w, c]. */
  readonly rowShape: [number, number, number];
  run(job: BoundaryJob, dtype?: BoundaryDtype): Promise<BoundaryOutput>;
  dispose(): void;
}

/** In-thread boundary forward; `batchSize` views go through the network at once. */
export function createBoundaryRunner(weights: BoundaryWeights, opts: BoundaryModelOptions & { batchSize?: number }): BoundaryRunner {
  const boundary = opts.boundaryLayer ?? DEFAULT_BOUNDARY;
  const model = baseFromWeights(weights, opts);
  let ff: FastForward;
  let rowShape: [number, number, number];
  try {
    rowShape = (model.getLayer(boundary).outputShape as number[]).slice(1) as [number, number, number];
    ff = createFastForward(model);
  } finally {
    // The executor holds its own folded weights: the layers model is no longer needed.
    model.dispose();
  }
  const size = opts.inputSize;
  const batchSize = Math.max(1, opts.batchSize ?? 4);
  const rowLen = rowShape[0] * rowShape[1] * rowShape[2];
  const imageBytes = size * size * 3;
  return {
    rowShape,
    async run(job, dtype = 'float16') {
      const { views } = jobViews(job, size);
      const n = views.length;
      const out = dtype === 'float16' ? new Uint16Array(n * rowLen) : new Float32Array(n * rowLen);
      for (let start = 0; start < n; start += batchSize) {
        const end = Math.min(n, start + batchSize);
        const px = new Float32Array((end - start) * imageBytes);
        for (let v = start; v < end; v++) {
          const [img, draw] = views[v];
          const data = job.pixels.subarray(img * imageBytes, (img + 1) * imageBytes);
          const offset = (v - start) * imageBytes;
          if (draw) px.set(applyAugmentation({ data, width: size, height: size }, draw), offset);
          else px.set(data, offset);
        }
        const x = tf.tensor4d(px, [end - start, size, size, 3]);
        const y = ff.forward(x, { to: boundary });
        x.dispose();
        const values = y.dataSync() as Float32Array;
        y.dispose();
        if (out instanceof Uint16Array) toFloat16(values, out.subarray(start * rowLen, end * rowLen));
        else out.set(values, start * rowLen);
      }
      return { data: out, dtype, shape: [n, ...rowShape] };
    },
    dispose() {
      ff.dispose();
    },
  };
}
