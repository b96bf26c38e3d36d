import type { RgbImage } from '../core/image.js';
import { tf } from '../core/tf.js';
import type { LayersModel, Tensor4D } from '../core/tf.js';
import { type AugmentDraw, applyAugmentation } from './augment.js';

/** Activations of many images at one layer, rows of `dim` floats each. */
export interface FeatureBlock {
  data: Float32Array;
  /** Shape of one row, e.g. [14, 14, 576] or [1280]. */
  shape: number[];
  rows: number;
}

export interface FeatureExtractor {
  readonly description: string;
  compute(images: readonly RgbImage[], draws: readonly (AugmentDraw | null)[], layer: string, onProgress?: (done: number) => void): Promise<FeatureBlock>;
  close(): Promise<void>;
}

/** Pixels of one view: the augmented image, or the decoded image as floats. */
export function viewPixels(img: RgbImage, draw: AugmentDraw | null): Float32Array {
  return draw ? applyAugmentation(img, draw) : Float32Array.from(img.data);
}

/**
 * Runs the frozen layers in this thread, in inference mode, through a sub-model of the classifier.
 * The simple reference path; the worker pool is the fast one.
 */
export class InProcessExtractor implements FeatureExtractor {
  readonly description = 'in-process (1 thread)';
  private readonly subModels = new Map<string, LayersModel>();

  constructor(
    private readonly model: LayersModel,
    private readonly batchSize = 16,
  ) {}

  private sub(layer: string): LayersModel {
    let m = this.subModels.get(layer);
    if (!m) {
      m = tf.model({ inputs: this.model.inputs, outputs: this.model.getLayer(layer).output as tf.SymbolicTensor });
      this.subModels.set(layer, m);
    }
    return m;
  }

  async compute(images: readonly RgbImage[], draws: readonly (AugmentDraw | null)[], layer: string, onProgress?: (done: number) => void): Promise<FeatureBlock> {
    const sub = this.sub(layer);
    const shape = (sub.outputs[0].shape as number[]).slice(1);
    const dim = shape.reduce((a, b) => a * b, 1);
    const data = new Float32Array(images.length * dim);
    const size = images[0]?.width ?? 0;
    for (let start = 0; start < images.length; start += this.batchSize) {
      const end = Math.min(images.length, start + this.batchSize);
      const px = new Float32Array((end - start) * size * size * 3);
      for (let i = start; i < end; i++) px.set(viewPixels(images[i], draws[i]), (i - start) * size * size * 3);
      const out = tf.tidy(() => sub.predict(tf.tensor4d(px, [end - start, size, size, 3])) as Tensor4D);
      data.set(await out.data(), start * dim);
      out.dispose();
      onProgress?.(end);
    }
    return { data, shape, rows: images.length };
  }

  async close(): Promise<void> {
    this.subModels.clear();
  }
}
