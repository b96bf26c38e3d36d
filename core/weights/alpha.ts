import { ALPHAS, makeDivisible } from '../mobilenet-v2.js';

type Shapes = ReadonlyMap<string, { shape: readonly number[] } | readonly number[]> | Record<string, readonly number[]>;

function shapeOf(shapes: Shapes, key: string): readonly number[] | undefined {
  const v = shapes instanceof Map ? shapes.get(key) : (shapes as Record<string, readonly number[]>)[key];
  if (!v) return undefined;
  return Array.isArray(v) ? v : (v as { shape: readonly number[] }).shape;
}

/** 1 -> "1.0", 0.35 -> "0.35" (as Keras and its file names write alpha). */
export function formatAlpha(alpha: number): string {
  return Number.isInteger(alpha) ? alpha.toFixed(1) : String(alpha);
}

/** The channel counts that identify each alpha: Conv1 filters and block_16_project filters. */
export function alphaSignature(alpha: number): { conv1: number; block16: number } {
  return { conv1: makeDivisible(32 * alpha), block16: makeDivisible(Math.trunc(320 * alpha)) };
}

/**
 * MobileNetV2 alpha from weight shapes (keyed `<layer>/<weight>`): block_16_project's output
 * channels identify it uniquely (Conv1's alone cannot: 0.35 and 0.5 both have 16); Conv1 is
 * cross-checked when present.
 */
export function inferAlpha(shapes: Shapes): number {
  const b16 = shapeOf(shapes, 'block_16_project/kernel');
  const c1 = shapeOf(shapes, 'Conv1/kernel');
  if (!b16 && !c1) {
    throw new Error('cannot infer MobileNetV2 alpha: neither block_16_project/kernel nor Conv1/kernel is in the weights');
  }
  const candidates = ALPHAS.filter((a) => {
    const sig = alphaSignature(a);
    return (!b16 || b16.at(-1) === sig.block16) && (!c1 || c1.at(-1) === sig.conv1);
  });
  if (candidates.length === 0) {
    throw new Error(
      `cannot infer MobileNetV2 alpha: Conv1/kernel ${c1 ? `[${c1}]` : 'missing'}, block_16_project/kernel ${b16 ? `[${b16}]` : 'missing'} match no alpha in ${ALPHAS.join(', ')}`,
    );
  }
  if (candidates.length > 1) {
    throw new Error(
      `cannot infer MobileNetV2 alpha from Conv1/kernel alone (${candidates.join(' or ')}); block_16_project/kernel is missing`,
    );
  }
  return candidates[0];
}
