// The head convention's arithmetic on plain numbers, without tfjs (core/head-convention.ts
// re-exports it): two classes are ONE logit whose sigmoid is P(classes[1]); N > 2 are N logits with softmax.

export const isBinary = (numClasses: number): boolean => numClasses === 2;

/** Units of the logits layer. */
export const logitUnits = (numClasses: number): number => (isBinary(numClasses) ? 1 : numClasses);

/** Activation of the model's output layer (and the manifest's `output`). */
export const outputActivation = (numClasses: number): 'sigmoid' | 'softmax' => (isBinary(numClasses) ? 'sigmoid' : 'softmax');

/** Probability rows in class order from the exported model's output (one P(classes[1]) per image, or N per image). */
export function probabilityRows(output: Float32Array | number[], numClasses: number): number[][] {
  const rows: number[][] = [];
  if (isBinary(numClasses)) {
    for (const p of output) rows.push([1 - p, p]);
  } else {
    for (let i = 0; i < output.length; i += numClasses) rows.push(Array.from(output.slice(i, i + numClasses)));
  }
  return rows;
}

/** The predicted class of a probability row; ties go to the lower index (binary p = 0.5 is class 0, like Keras' p > 0.5). */
export function argmax(row: ArrayLike<number>): number {
  let best = 0;
  for (let j = 1; j < row.length; j++) if (row[j] > row[best]) best = j;
  return best;
}

/**
 * One probability row in class order from one row of logits divided by a temperature (temperature
 * scaling: t = 1 is the model's own output; argmax never changes).
 */
export function temperedProbabilities(z: ArrayLike<number>, numClasses: number, t = 1): number[] {
  if (isBinary(numClasses)) {
    const p = 1 / (1 + Math.exp(-z[0] / t));
    return [1 - p, p];
  }
  let max = Number.NEGATIVE_INFINITY;
  for (let j = 0; j < z.length; j++) max = Math.max(max, z[j] / t);
  const e = Array.from({ length: z.length }, (_, j) => Math.exp(z[j] / t - max));
  const s = e.reduce((a, b) => a + b, 0);
  return e.map((v) => v / s);
}

/** The largest |a - b| over two sets of probability rows; infinite when their shapes differ, NaN when a value is. */
export function maxAbsDiff(a: number[][], b: number[][]): number {
  if (a.length !== b.length) return Number.POSITIVE_INFINITY;
  let d = 0;
  for (let i = 0; i < a.length; i++) {
    if (a[i].length !== b[i].length) return Number.POSITIVE_INFINITY;
    for (let j = 0; j < a[i].length; j++) d = Math.max(d, Math.abs(a[i][j] - b[i][j]));
  }
  return d;
}
