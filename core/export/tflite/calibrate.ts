// Activation ranges for int8 quantization: the fused graph run in float32 with tfjs over calibration
// images (RGB 0..255 pixels), recording every value's [min, max] ('minmax') or the mean over batches
// of each batch's low/high percentile ('percentile', clips the rare outliers that widen a range).
import type { Tensor, Tensor4D } from '@tensorflow/tfjs';
import { applyActivation } from '../../fast-forward.js';
import type { FusedGraph, FusedOp } from '../../graph/fused-graph.js';
import { tf } from '../../tf.js';
import { type ActivationRanges, withTwoClassSoftmax } from './writer.js';

export type CalibrationMethod = 'minmax' | 'percentile';

export interface CalibrationOptions {
  method?: CalibrationMethod;
  /** For 'percentile': the share of values kept inside the range (default 0.9999). */
  percentile?: number;
  batchSize?: number;
}

type TfPad = 'same' | 'valid' | [[number, number], [number, number], [number, number], [number, number]];
const tfPad = (p: 'same' | 'valid' | number[]): TfPad =>
  typeof p === 'string'
    ? p
    : [
        [0, 0],
        [p[0], p[1]],
        [p[2], p[3]],
        [0, 0],
      ];

/** A float32 tfjs executor of the graph's ops that returns every op's output. Dispose the constants with `dispose`. */
function executor(graph: FusedGraph) {
  const consts = new Map<FusedOp, Tensor[]>();
  for (const op of graph.ops) {
    if (op.op === 'conv2d' || op.op === 'depthwiseConv2d') consts.set(op, [tf.tensor4d(op.kernel, op.kernelShape), tf.tensor1d(op.bias)]);
    else if (op.op === 'dense')
      consts.set(op, [tf.tensor2d(op.kernel, op.kernelShape), tf.tensor1d(op.bias ?? new Float32Array(op.kernelShape[1]))]);
  }
  const run = (x: Tensor4D): Map<string, Tensor> => {
    const values = new Map<string, Tensor>();
    const r = graph.inputRescale;
    values.set(graph.input, r ? tf.add(tf.mul(x, r.scale), r.offset) : x);
    const get = (n: string) => values.get(n) ?? (undefined as never);
    for (const op of graph.ops) {
      const ins = op.inputs.map(get);
      let y: Tensor;
      switch (op.op) {
        case 'identity':
          y = ins[0];
          break;
        case 'rescale':
          y = tf.add(tf.mul(ins[0], op.scale), op.offset);
          break;
        case 'pad':
          y = tf.pad(ins[0], tfPad(op.pads) as [number, number][]);
          break;
        case 'add':
          y = tf.add(ins[0], ins[1]);
          break;
        case 'globalAveragePool':
          y = tf.mean(ins[0], [1, 2], op.keepDims);
          break;
        case 'activation':
          y = applyActivation(ins[0], op.activation, op.out);
          break;
        case 'conv2d':
        case 'depthwiseConv2d': {
          const [k, b] = consts.get(op) as Tensor[];
          // Explicit pads as a tf.pad then a valid conv (tfjs' depthwise conv takes no explicit padding).
          const explicit = typeof op.pad !== 'string';
          const args = {
            x: (explicit ? tf.pad(ins[0], tfPad(op.pad as number[]) as [number, number][]) : ins[0]) as Tensor4D,
            filter: k as Tensor4D,
            strides: op.strides,
            pad: explicit ? 'valid' : (op.pad as 'same' | 'valid'),
            dilations: op.dilations,
            bias: b,
            activation: op.activation,
          } as const;
          y = op.op === 'conv2d' ? tf.fused.conv2d(args) : tf.fused.depthwiseConv2d(args);
          break;
        }
        case 'dense': {
          const [k, b] = consts.get(op) as Tensor[];
          const flat = ins[0].reshape([ins[0].shape[0], -1]);
          y = applyActivation(tf.add(tf.matMul(flat, k), b), op.activation, op.out);
          break;
        }
        default:
          throw new Error(`calibrate: op '${op.op}' (${op.out}) cannot be run`);
      }
      values.set(op.out, y);
    }
    return values;
  };
  const dispose = () => {
    for (const ts of consts.values()) for (const t of ts) t.dispose();
  };
  return { run, dispose };
}

/**
 * Ranges of every value of `withTwoClassSoftmax(graph)` over `images` ([h*w*3] RGB 0..255 each, the
 * graph's input size), for writeTflite's int8 variant.
 */
export function calibrateRanges(
  graphIn: FusedGraph,
  images: readonly (Uint8Array | Float32Array)[],
  opts: CalibrationOptions = {},
): ActivationRanges {
  if (images.length === 0) throw new Error('calibrate: no calibration images');
  const graph = withTwoClassSoftmax(graphIn);
  const method = opts.method ?? 'minmax';
  const keep = opts.percentile ?? 0.9999;
  const batchSize = opts.batchSize ?? 16;
  const [h, w, c] = graph.inputShape;
  const ex = executor(graph);
  const sums = new Map<string, { lo: number; hi: number; n: number }>();
  try {
    for (let start = 0; start < images.length; start += batchSize) {
      const batch = images.slice(start, start + batchSize);
      const flat = new Float32Array(batch.length * h * w * c);
      batch.forEach((img, i) => {
        if (img.length !== h * w * c) throw new Error(`calibrate: image ${start + i} has ${img.length} values, expected ${h * w * c}`);
        flat.set(img, i * h * w * c);
      });
      const stats = tf.tidy(() => {
        const values = ex.run(tf.tensor4d(flat, [batch.length, h, w, c]));
        const out: [string, Tensor][] = [];
        for (const [name, t] of values) {
          if (name === graph.input) continue;
          if (method === 'minmax') out.push([name, tf.stack([t.min(), t.max()])]);
          else {
            const v = t.flatten();
            const k = Math.max(1, Math.ceil(v.size * (1 - keep)));
            out.push([name, tf.stack([tf.neg(tf.topk(tf.neg(v), k).values.min()), tf.topk(v, k).values.min()])]);
          }
        }
        return out;
      });
      for (const [name, t] of stats) {
        const [lo, hi] = t.dataSync();
        t.dispose();
        const s = sums.get(name);
        if (!s) sums.set(name, method === 'minmax' ? { lo, hi, n: 1 } : { lo, hi, n: 1 });
        else if (method === 'minmax') {
          s.lo = Math.min(s.lo, lo);
          s.hi = Math.max(s.hi, hi);
        } else {
          s.lo += lo;
          s.hi += hi;
          s.n++;
        }
      }
    }
  } finally {
    ex.dispose();
  }
  const ranges: ActivationRanges = new Map();
  for (const [name, s] of sums) ranges.set(name, [s.lo / s.n, s.hi / s.n]);
  return ranges;
}
