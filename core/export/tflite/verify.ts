// Verification of an exported .tflite file in TensorFlow Lite's own interpreter: it runs on the same
// uint8 pixels as the float32 tfjs model, and float variants must agree within a stated tolerance;
// int8 reports top-1 agreement and (with labels) the accuracy delta.
import type { TfliteRuntime } from './interpreter.js';
import type { TfliteVariant } from './writer.js';

/** max |dp| allowed between the exported file's and the tfjs model's probabilities. int8 has no bound (reported). */
export const TFLITE_TOLERANCE: Record<TfliteVariant, number | null> = { float32: 1e-4, float16: 1e-2, int8: null };

export interface TfliteVerifyInputs {
  /** RGB pixels, [h*w*3] each, at the model's input size. */
  pixels: readonly Uint8Array[];
  /** The float32 tfjs model's class probabilities for each image (same order). */
  expected: readonly (readonly number[])[];
  /** True class index per image, when known (accuracy). */
  labels?: readonly number[];
}

export type TfliteVerification =
  | { status: 'unavailable'; variant: TfliteVariant; reason: string }
  | {
      status: 'passed' | 'failed';
      variant: TfliteVariant;
      runtime: string;
      images: number;
      maxAbsDiff: number;
      /** The bound that maxAbsDiff had to meet (null for int8: reported, not enforced). */
      tolerance: number | null;
      top1Agreement: number;
      /** With labels: accuracy of the exported model, of the tfjs model, and their difference. */
      accuracy?: { exported: number; reference: number; delta: number };
      meanInferMs: number;
      /** Why it failed. */
      reason?: string;
    };

const argmax = (row: ArrayLike<number>): number => {
  let best = 0;
  for (let i = 1; i < row.length; i++) if (row[i] > row[best]) best = i;
  return best;
};

export async function verifyTflite(
  bytes: Uint8Array,
  variant: TfliteVariant,
  inputs: TfliteVerifyInputs,
  runtime: TfliteRuntime | { unavailable: string },
): Promise<TfliteVerification> {
  if ('unavailable' in runtime) return { status: 'unavailable', variant, reason: runtime.unavailable };
  const n = inputs.pixels.length;
  if (n === 0 || inputs.expected.length !== n) throw new Error(`tflite verify: ${n} images for ${inputs.expected.length} expected rows`);
  const feed = variant === 'int8' ? inputs.pixels : inputs.pixels.map((p) => Float32Array.from(p));
  const result = await runtime.run(bytes, feed);
  let maxAbsDiff = 0;
  let agree = 0;
  let correct = 0;
  let refCorrect = 0;
  result.outputs.forEach((row, i) => {
    const exp = inputs.expected[i];
    if (row.length !== exp.length) throw new Error(`tflite verify: the file outputs ${row.length} values, the model ${exp.length}`);
    for (let k = 0; k < row.length; k++) {
      const d = Math.abs(row[k] - exp[k]);
      if (!(d <= maxAbsDiff)) maxAbsDiff = Number.isNaN(d) ? Number.POSITIVE_INFINITY : d;
    }
    const top = argmax(row);
    if (top === argmax(exp)) agree++;
    if (inputs.labels) {
      if (top === inputs.labels[i]) correct++;
      if (argmax(exp) === inputs.labels[i]) refCorrect++;
    }
  });
  const tolerance = TFLITE_TOLERANCE[variant];
  const passed = tolerance === null ? Number.isFinite(maxAbsDiff) : maxAbsDiff <= tolerance;
  const accuracy = inputs.labels ? { exported: correct / n, reference: refCorrect / n, delta: (correct - refCorrect) / n } : undefined;
  return {
    status: passed ? 'passed' : 'failed',
    variant,
    runtime: runtime.name,
    images: n,
    maxAbsDiff,
    tolerance,
    top1Agreement: agree / n,
    ...(accuracy ? { accuracy } : {}),
    meanInferMs: result.inferMs,
    ...(passed
      ? {}
      : {
          reason:
            tolerance === null
              ? 'non-finite outputs'
              : `max |dp| ${maxAbsDiff.toExponential(2)} exceeds the ${variant} tolerance ${tolerance}`,
        }),
  };
}
