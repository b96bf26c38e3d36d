import type { RgbImage } from '../core/image.js';
import { openSetDistance } from '../core/open-set-score.js';
import { temperedProbabilities, probabilityRows as toClassProbabilities } from '../core/probability-rows.js';
import type { ServingModel } from './model-holder.js';

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
  return toClassProbabilities(await predict(pixelsOf(images, size), images.length), numClasses);
}

/** Labels sorted by probability, best first, cut to `top`. */
export function rank(probabilities: number[], classes: string[], top = classes.length): Prediction[] {
  return probabilities
    .map((score, i) => ({ label: classes[i], score }))
    .sort((a, b) => b.score - a.score)
    .slice(0, Math.max(1, top));
}

export interface ScoredImage {
  /** Probabilities in class order: softmax(z / T) when the model is calibrated, else the model's own. */
  probabilities: number[];
  calibrated: boolean;
  /** Open-set distance to the nearest class mean, when the model has open-set statistics. */
  distance?: number;
}

/**
 * Probabilities (calibrated when the manifest has a temperature) and the open-set distance of each
 * image, from one forward pass. A model without these fields, or without the layers they need, is
 * served exactly as predictBatch does.
 */
export async function scoreBatch(
  serving: Pick<ServingModel, 'predict' | 'predictAll' | 'manifest' | 'openSetStats'>,
  images: RgbImage[],
): Promise<ScoredImage[]> {
  const { manifest, predictAll } = serving;
  const size = manifest.input.size;
  const numClasses = manifest.classes.length;
  const stats = serving.openSetStats;
  if (!predictAll || (!manifest.calibration && !stats)) {
    const probs = await predictBatch(serving.predict, images, size, numClasses);
    return probs.map((probabilities) => ({ probabilities, calibrated: false }));
  }
  const [probs, logits, pooled] = await predictAll(pixelsOf(images, size), images.length);
  const units = logits.length / images.length;
  const dim = pooled.length / images.length;
  // T = 1 (temperature scaling off, or a fit kept at 1) serves the model's own probabilities.
  const t = manifest.calibration?.temperature === 1 ? undefined : manifest.calibration?.temperature;
  const raw = toClassProbabilities(probs, numClasses);
  return images.map((_, i) => {
    const z = logits.subarray(i * units, (i + 1) * units);
    const out: ScoredImage = t
      ? { probabilities: temperedProbabilities(z, numClasses, t), calibrated: true }
      : { probabilities: raw[i], calibrated: false };
    if (stats && manifest.openSet && dim === manifest.openSet.dim) {
      out.distance = openSetDistance(pooled.subarray(i * dim, (i + 1) * dim), stats).distance;
    }
    return out;
  });
}

function pixelsOf(images: RgbImage[], size: number): Float32Array {
  const pixels = size * size * 3;
  const input = new Float32Array(images.length * pixels);
  images.forEach((img, n) => {
    if (img.width !== size || img.height !== size || img.data.length !== pixels) {
      throw new Error(`decoded image ${n} is ${img.width}x${img.height}, the model wants ${size}x${size}`);
    }
    input.set(img.data, n * pixels);
  });
  return input;
}
