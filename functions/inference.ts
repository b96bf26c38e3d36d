import { toClassProbabilities } from '../core/classifier.js';
import type { RgbImage } from '../core/image.js';

export interface Prediction {
  label: string;
  score: number;
}

/** Runs one batch through the model (tfjs or onnxruntime: functions/model-holder.ts); returns per-image probabilities in class order. */
export async function predictBatch(
  predict: (pixels: Float32Array, n: number) => Promise<Float32Array>,
  images: RgbImage[],
  size: number,
  numClasses: number,
): Promise<number[][]> {
  const pixels = size * size * 3;
  const input = new Float32Array(images.length * pixels);
  images.forEach((img, n) => {
    if (img.width !== size || img.height !== size || img.data.length !== pixels) {
      throw new Error(`decoded image ${n} is ${img.width}x${img.height}, the model wants ${size}x${size}`);
    }
    input.set(img.data, n * pixels);
  });
  return toClassProbabilities(await predict(input, images.length), numClasses);
}

/** Labels sorted by probability, best first, cut to `top`. */
export function rank(probabilities: number[], classes: string[], top = classes.length): Prediction[] {
  return probabilities
    .map((score, i) => ({ label: classes[i], score }))
    .sort((a, b) => b.score - a.score)
    .slice(0, Math.max(1, top));
}
