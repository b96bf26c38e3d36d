// The fused inference graph as a TFLite model: builtin ops only, batch 1, NHWC.
//   float32: input float32 [1,h,w,3] RGB 0..255, the preprocessing (x*scale+offset) as MUL + ADD.
//   float16: the same graph, conv/dense kernels stored as float16 and DEQUANTIZEd to float32 at load
//            (what TensorFlow's converter writes for float16 post-training quantization), but for
//            the kernels the shared float16 rule keeps float32 (../float16-weights.ts: depthwise and
//            small linear convs) and all biases.
//   int8:    full-integer: per-channel symmetric int8 conv weights, per-tensor symmetric int8 dense
//            weights, int32 biases, per-tensor asymmetric int8 activations from calibrated ranges. Input
//            uint8 [1,h,w,3] (raw pixels; its quantization parameters are the preprocessing), output
//            float32 probabilities (a DEQUANTIZE of the int8 softmax).
// Every variant outputs [1, N] class probabilities: a binary model's Dense(1)+sigmoid becomes
// Dense(2) with kernel [-w/2, w/2] and bias [-b/2, b/2] + SOFTMAX, since
// softmax([-z/2, z/2]) = [1 - sigmoid(z), sigmoid(z)] exactly (and int8 needs no CONCATENATION of
// differently scaled tensors).
import type { ConvOp, DenseOp, FusedGraph, FusedOp, Pads } from '../../graph/fused-graph.js';
import { float32ToFloat16Bits } from '../../quantize.js';
import { keepKernelFloat32 } from '../float16-weights.js';
import {
  ActivationFunctionType,
  BuiltinOperator,
  type ModelSpec,
  type OpSpec,
  Padding,
  type Quantization,
  serializeModel,
  type TensorSpec,
  TensorType,
} from './flatbuffer.js';

export type TfliteVariant = 'float32' | 'float16' | 'int8';

/** Per value of the graph (op `out` names, after withTwoClassSoftmax): [min, max] seen in calibration. */
export type ActivationRanges = Map<string, [number, number]>;

export interface TfliteMetadata {
  classes: string[];
  /** Free-form facts recorded in the model's `edgetune` metadata entry (model version, alpha...). */
  extra?: Record<string, unknown>;
}

export interface TfliteWriteOptions extends TfliteMetadata {
  variant: TfliteVariant;
  /** Required for int8: calibrated ranges of every value (see calibrate.ts). */
  ranges?: ActivationRanges;
  /** float16: kernels of the ops this returns true for stay float32 (default: the shared rule, keepKernelFloat32). */
  float32Weights?: (op: FusedOp) => boolean;
}

const fail = (msg: string): never => {
  throw new Error(`tflite export: ${msg}`);
};

const ACT: Record<string, ActivationFunctionType> = {
  linear: ActivationFunctionType.NONE,
  relu: ActivationFunctionType.RELU,
  relu6: ActivationFunctionType.RELU6,
};

function bytesOf(a: Float32Array | Int32Array | Int8Array | Uint16Array): Uint8Array {
  return new Uint8Array(a.buffer, a.byteOffset, a.byteLength).slice();
}

/** TF's SAME padding for one spatial dim: [before, after]. */
function samePads(inSize: number, k: number, stride: number, dilation: number): [number, number] {
  const eff = (k - 1) * dilation + 1;
  const out = Math.ceil(inSize / stride);
  const total = Math.max((out - 1) * stride + eff - inSize, 0);
  return [Math.floor(total / 2), total - Math.floor(total / 2)];
}

/** Conv2D kernel HWIO -> TFLite OHWI. */
function convKernelOHWI(op: ConvOp): Float32Array {
  const [kh, kw, ci, co] = op.kernelShape;
  const out = new Float32Array(op.kernel.length);
  for (let h = 0; h < kh; h++)
    for (let w = 0; w < kw; w++)
      for (let i = 0; i < ci; i++)
        for (let o = 0; o < co; o++) out[((o * kh + h) * kw + w) * ci + i] = op.kernel[((h * kw + w) * ci + i) * co + o];
  return out;
}

/** Dense kernel [in, out] -> TFLite FULLY_CONNECTED weights [out, in]. */
function denseWeights(kernel: Float32Array, inF: number, outF: number): Float32Array {
  const out = new Float32Array(kernel.length);
  for (let i = 0; i < inF; i++) for (let o = 0; o < outF; o++) out[o * inF + i] = kernel[i * outF + o];
  return out;
}

interface Affine {
  scale: number;
  zeroPoint: number;
}

/** Per-tensor asymmetric int8 parameters covering [lo, hi] (and 0, so zero padding is exact). */
export function int8Params(lo: number, hi: number): Affine {
  const min = Math.min(lo, 0);
  const max = Math.max(hi, 0);
  const scale = max > min ? (max - min) / 255 : 1;
  const zeroPoint = Math.max(-128, Math.min(127, Math.round(-128 - min / scale)));
  return { scale, zeroPoint };
}

/** Symmetric int8 weights, one scale per `channels` slice along the last axis (per-channel) or one for all. */
function quantizeSymmetric(
  w: Float32Array,
  channels: number,
  perChannel: boolean,
  channelOf: (i: number) => number,
): { q: Int8Array; scales: number[] } {
  const n = perChannel ? channels : 1;
  const maxAbs = new Float64Array(n);
  for (let i = 0; i < w.length; i++) {
    const c = perChannel ? channelOf(i) : 0;
    const a = Math.abs(w[i]);
    if (a > maxAbs[c]) maxAbs[c] = a;
  }
  // float32 scales, used as stored for the rounding, so the file's scale times q is what we computed.
  const scales = Array.from(maxAbs, (m) => Math.fround(m > 0 ? m / 127 : 1));
  const q = new Int8Array(w.length);
  for (let i = 0; i < w.length; i++) {
    const s = scales[perChannel ? channelOf(i) : 0];
    q[i] = Math.max(-127, Math.min(127, Math.round(w[i] / s)));
  }
  return { q, scales };
}

class SpecBuilder {
  readonly tensors: TensorSpec[] = [];
  readonly ops: OpSpec[] = [];
  add(t: TensorSpec): number {
    this.tensors.push(t);
    return this.tensors.length - 1;
  }
  op(code: BuiltinOperator, version: number, inputs: number[], outputs: number[], options: OpSpec['options']): void {
    this.ops.push({ code, version, inputs, outputs, options });
  }
}

/** Rewrites a binary head (Dense(1) then sigmoid) as Dense(2) [-w/2, w/2] + softmax; other graphs unchanged. */
export function withTwoClassSoftmax(graph: FusedGraph): FusedGraph {
  if (graph.outputs.length !== 1) fail(`expected one graph output, got ${graph.outputs.length}`);
  const out = graph.ops.find((o) => o.out === graph.outputs[0]) ?? fail(`no op produces ${graph.outputs[0]}`);
  const units = out.shape[out.shape.length - 1];
  const isSigmoid = (out.op === 'activation' || out.op === 'dense') && out.activation === 'sigmoid';
  if (!isSigmoid) return graph;
  if (units !== 1) fail(`a sigmoid output of ${units} units is not a class distribution`);
  const dense = (out.op === 'dense' ? out : graph.ops.find((o) => o.out === out.inputs[0])) as FusedOp;
  if (dense.op !== 'dense' || (out.op === 'activation' && dense.activation !== 'linear')) {
    fail('a sigmoid output must follow a linear Dense(1) layer');
  }
  const d = dense as DenseOp;
  const inF = d.kernelShape[0];
  const kernel = new Float32Array(inF * 2);
  for (let i = 0; i < inF; i++) {
    kernel[i * 2] = -d.kernel[i] / 2;
    kernel[i * 2 + 1] = d.kernel[i] / 2;
  }
  const b = d.bias ? d.bias[0] : 0;
  const logits: DenseOp = {
    ...d,
    out: `${d.out}/two_class`,
    kernel,
    kernelShape: [inF, 2],
    bias: Float32Array.from([-b / 2, b / 2]),
    activation: 'linear',
    shape: [2],
  };
  const softmax: FusedOp = {
    op: 'activation',
    activation: 'softmax',
    out: graph.outputs[0],
    inputs: [logits.out],
    layers: out.layers,
    shape: [2],
  };
  const ops = graph.ops.filter((o) => o !== out && o !== dense);
  // The Dense(1) logits value may be read elsewhere only if someone asked for it; refuse rather than drop it.
  if (ops.some((o) => o.inputs.includes(dense.out))) fail(`the logits value ${dense.out} has other consumers`);
  return { ...graph, ops: [...ops, logits, softmax] };
}

/** The TFLite model of `graph` (a classifier graph: one NHWC image input, one probabilities output). */
export function writeTflite(graphIn: FusedGraph, opts: TfliteWriteOptions): Uint8Array {
  const { variant } = opts;
  if (variant === 'int8' && !opts.ranges) fail('int8 needs calibrated activation ranges');
  const graph = withTwoClassSoftmax(graphIn);
  const [h, w, c] = graph.inputShape;
  if (graph.inputShape.length !== 3 || c !== 3) fail(`expected an [h, w, 3] image input, got [${graph.inputShape}]`);
  const outOp = graph.ops.find((o) => o.out === graph.outputs[0]) ?? fail('no output op');
  const numClasses = outOp.shape[outOp.shape.length - 1];
  if (numClasses !== opts.classes.length) fail(`the graph outputs ${numClasses} values for ${opts.classes.length} classes`);

  const sb = new SpecBuilder();
  const int8 = variant === 'int8';
  const ranges = opts.ranges ?? new Map();
  const value = new Map<string, number>();
  const shapes = new Map<string, number[]>();
  const qOf = new Map<number, Affine>();

  const rangeOf = (name: string): [number, number] => ranges.get(name) ?? fail(`no calibrated range for '${name}'`);
  const activation = (name: string, shape: number[], params?: Affine): number => {
    if (!int8) return sb.add({ name, shape, type: TensorType.FLOAT32 });
    const p = params ?? int8Params(...rangeOf(name));
    const i = sb.add({ name, shape, type: TensorType.INT8, quantization: { scale: [p.scale], zeroPoint: [p.zeroPoint] } });
    qOf.set(i, p);
    return i;
  };
  const keepFloat32 = opts.float32Weights ?? keepKernelFloat32;
  /** A float32 constant; a float16 kernel (`asFloat16`) is stored as float16 and DEQUANTIZEd to float32. */
  const floatConst = (name: string, shape: number[], data: Float32Array, asFloat16 = false): number => {
    if (!asFloat16) return sb.add({ name, shape, type: TensorType.FLOAT32, data: bytesOf(data) });
    const half = new Uint16Array(data.length);
    for (let i = 0; i < data.length; i++) half[i] = float32ToFloat16Bits(data[i]);
    const h16 = sb.add({ name: `${name}/float16`, shape, type: TensorType.FLOAT16, data: bytesOf(half) });
    const f32 = sb.add({ name, shape, type: TensorType.FLOAT32 });
    sb.op(BuiltinOperator.DEQUANTIZE, 3, [h16], [f32], { kind: 'dequantize' });
    return f32;
  };
  const int32Const = (name: string, shape: number[], data: number[]): number =>
    sb.add({ name, shape, type: TensorType.INT32, data: bytesOf(Int32Array.from(data)) });
  const v = (name: string): number => value.get(name) ?? fail(`value '${name}' is not computed before it is read`);

  // Input and its preprocessing.
  const firstRescale = graph.inputRescale ?? null;
  const shape4 = [1, h, w, c];
  let inputIndex = -1;
  if (!int8) {
    inputIndex = sb.add({ name: 'image', shape: shape4, type: TensorType.FLOAT32 });
    value.set(graph.input, inputIndex);
    if (firstRescale) {
      const scaled = sb.add({ name: 'preprocess/scaled', shape: shape4, type: TensorType.FLOAT32 });
      const out = sb.add({ name: 'preprocess', shape: shape4, type: TensorType.FLOAT32 });
      const sc = sb.add({
        name: 'preprocess/scale',
        shape: [],
        type: TensorType.FLOAT32,
        data: bytesOf(Float32Array.of(firstRescale.scale)),
      });
      const off = sb.add({
        name: 'preprocess/offset',
        shape: [],
        type: TensorType.FLOAT32,
        data: bytesOf(Float32Array.of(firstRescale.offset)),
      });
      sb.op(BuiltinOperator.MUL, 1, [inputIndex, sc], [scaled], { kind: 'mul', activation: ActivationFunctionType.NONE });
      sb.op(BuiltinOperator.ADD, 1, [scaled, off], [out], { kind: 'add', activation: ActivationFunctionType.NONE });
      value.set(graph.input, out);
    }
  }
  shapes.set(graph.input, graph.inputShape);

  // int8: the preprocessing is the input's quantization: uint8 pixel p stands for scale*(p - zeroPoint),
  // i.e. p*scale + offset with zeroPoint = -offset/scale rounded (128 for x/127.5-1: off by 1/255).
  let inputQuant: { scale: number; zeroPoint: number; exactOffset: number } | undefined;
  const rescaleInt8 = (rescale: { scale: number; offset: number }, consumerInput: string) => {
    const zp = Math.round(-rescale.offset / rescale.scale);
    if (zp < 0 || zp > 255) fail(`the preprocessing offset ${rescale.offset} does not fit a uint8 zero point`);
    inputQuant = { scale: rescale.scale, zeroPoint: zp, exactOffset: rescale.offset };
    inputIndex = sb.add({
      name: 'image',
      shape: shape4,
      type: TensorType.UINT8,
      quantization: { scale: [rescale.scale], zeroPoint: [zp] },
    });
    const p = { scale: rescale.scale, zeroPoint: zp - 128 };
    const q = activation(consumerInput, shape4, p);
    sb.op(BuiltinOperator.QUANTIZE, 2, [inputIndex], [q], { kind: 'quantize' });
    return q;
  };
  if (int8) {
    if (firstRescale) value.set(graph.input, rescaleInt8(firstRescale, 'preprocess'));
    else {
      const first = graph.ops[0];
      if (first?.op !== 'rescale' || first.inputs[0] !== graph.input)
        fail('int8 needs the preprocessing (a rescale) right after the input');
    }
  }

  for (const op of graph.ops) {
    const outShape = [1, ...op.shape];
    switch (op.op) {
      case 'identity':
        value.set(op.out, v(op.inputs[0]));
        break;
      case 'rescale': {
        if (int8) {
          if (op.inputs[0] !== graph.input || value.has(graph.input)) fail(`int8: rescale '${op.out}' is not the input's preprocessing`);
          value.set(op.out, rescaleInt8(op, op.out));
          break;
        }
        const x = v(op.inputs[0]);
        const scaled = sb.add({ name: `${op.out}/scaled`, shape: outShape, type: TensorType.FLOAT32 });
        const out = activation(op.out, outShape);
        const sc = sb.add({ name: `${op.out}/scale`, shape: [], type: TensorType.FLOAT32, data: bytesOf(Float32Array.of(op.scale)) });
        const off = sb.add({ name: `${op.out}/offset`, shape: [], type: TensorType.FLOAT32, data: bytesOf(Float32Array.of(op.offset)) });
        sb.op(BuiltinOperator.MUL, 1, [x, sc], [scaled], { kind: 'mul', activation: ActivationFunctionType.NONE });
        sb.op(BuiltinOperator.ADD, 1, [scaled, off], [out], { kind: 'add', activation: ActivationFunctionType.NONE });
        value.set(op.out, out);
        break;
      }
      case 'pad': {
        const x = v(op.inputs[0]);
        const [t, b, l, r] = op.pads;
        const pads = int32Const(`${op.out}/paddings`, [4, 2], [0, 0, t, b, l, r, 0, 0]);
        // int8 PAD keeps its input's quantization (the pad value is the zero point, i.e. 0.0).
        const out = activation(op.out, outShape, int8 ? qOf.get(x) : undefined);
        sb.op(BuiltinOperator.PAD, int8 ? 2 : 1, [x, pads], [out], { kind: 'pad' });
        value.set(op.out, out);
        break;
      }
      case 'conv2d':
      case 'depthwiseConv2d': {
        const x = v(op.inputs[0]);
        const inShape = shapes.get(op.inputs[0]) ?? fail(`unknown shape of ${op.inputs[0]}`);
        const [kh, kw, ci, m] = op.kernelShape;
        const depthwise = op.op === 'depthwiseConv2d';
        const co = depthwise ? ci * m : m;
        let padding = Padding.VALID;
        let xin = x;
        if (op.pad === 'same') padding = Padding.SAME;
        else if (op.pad !== 'valid') {
          const pads = op.pad as Pads;
          const same = [
            ...samePads(inShape[0], kh, op.strides[0], op.dilations[0]),
            ...samePads(inShape[1], kw, op.strides[1], op.dilations[1]),
          ];
          if (pads.every((p, i) => p === same[i])) padding = Padding.SAME;
          else if (pads.some((p) => p !== 0)) {
            // Padding that SAME does not produce: an explicit PAD, then a VALID conv.
            const padded = [1, inShape[0] + pads[0] + pads[1], inShape[1] + pads[2] + pads[3], inShape[2]];
            const pt = int32Const(`${op.out}/paddings`, [4, 2], [0, 0, pads[0], pads[1], pads[2], pads[3], 0, 0]);
            xin = activation(`${op.out}/padded`, padded, int8 ? qOf.get(x) : undefined);
            sb.op(BuiltinOperator.PAD, int8 ? 2 : 1, [x, pt], [xin], { kind: 'pad' });
          }
        }
        const kernel = depthwise ? op.kernel : convKernelOHWI(op);
        const kshape = depthwise ? [1, kh, kw, co] : [co, kh, kw, ci];
        const out = activation(op.out, outShape);
        let kIdx: number;
        let bIdx: number;
        if (int8) {
          const sIn = (qOf.get(xin) ?? fail(`no quantization for the input of ${op.out}`)).scale;
          const perCh = quantizeSymmetric(kernel, co, true, depthwise ? (i) => i % co : (i) => Math.floor(i / (kh * kw * ci)));
          kIdx = sb.add({
            name: `${op.out}/kernel`,
            shape: kshape,
            type: TensorType.INT8,
            data: bytesOf(perCh.q),
            quantization: { scale: perCh.scales, zeroPoint: perCh.scales.map(() => 0), quantizedDimension: depthwise ? 3 : 0 },
          });
          const bScales = perCh.scales.map((s) => Math.fround(sIn * s));
          const bq = Int32Array.from(op.bias, (b, i) => Math.round(b / bScales[i]));
          bIdx = sb.add({
            name: `${op.out}/bias`,
            shape: [co],
            type: TensorType.INT32,
            data: bytesOf(bq),
            quantization: { scale: bScales, zeroPoint: bScales.map(() => 0), quantizedDimension: 0 },
          });
        } else {
          kIdx = floatConst(`${op.out}/kernel`, kshape, kernel, variant === 'float16' && !keepFloat32(op));
          bIdx = floatConst(`${op.out}/bias`, [co], op.bias);
        }
        const act = ACT[op.activation] ?? fail(`conv activation ${op.activation}`);
        if (depthwise) {
          sb.op(BuiltinOperator.DEPTHWISE_CONV_2D, int8 ? 3 : op.dilations.some((d) => d !== 1) ? 2 : 1, [xin, kIdx, bIdx], [out], {
            kind: 'depthwise',
            padding,
            strideH: op.strides[0],
            strideW: op.strides[1],
            depthMultiplier: m,
            activation: act,
            dilationH: op.dilations[0],
            dilationW: op.dilations[1],
          });
        } else {
          sb.op(BuiltinOperator.CONV_2D, int8 ? 3 : 1, [xin, kIdx, bIdx], [out], {
            kind: 'conv2d',
            padding,
            strideH: op.strides[0],
            strideW: op.strides[1],
            activation: act,
            dilationH: op.dilations[0],
            dilationW: op.dilations[1],
          });
        }
        value.set(op.out, out);
        break;
      }
      case 'add': {
        if (op.inputs.length !== 2) fail(`add '${op.out}' has ${op.inputs.length} inputs`);
        const out = activation(op.out, outShape);
        sb.op(BuiltinOperator.ADD, int8 ? 2 : 1, [v(op.inputs[0]), v(op.inputs[1])], [out], {
          kind: 'add',
          activation: ActivationFunctionType.NONE,
        });
        value.set(op.out, out);
        break;
      }
      case 'globalAveragePool': {
        const axes = int32Const(`${op.out}/axes`, [2], [1, 2]);
        const out = activation(op.out, outShape);
        sb.op(BuiltinOperator.MEAN, int8 ? 2 : 1, [v(op.inputs[0]), axes], [out], { kind: 'reducer', keepDims: op.keepDims });
        value.set(op.out, out);
        break;
      }
      case 'dense': {
        const [inF, outF] = op.kernelShape;
        const x = v(op.inputs[0]);
        const weights = denseWeights(op.kernel, inF, outF);
        const bias = op.bias ?? new Float32Array(outF);
        const fused = ACT[op.activation];
        const preName = fused === undefined ? `${op.out}/pre_activation` : op.out;
        const out = activation(preName, [1, outF]);
        let kIdx: number;
        let bIdx: number;
        if (int8) {
          const sIn = (qOf.get(x) ?? fail(`no quantization for the input of ${op.out}`)).scale;
          const pt = quantizeSymmetric(weights, outF, false, () => 0);
          kIdx = sb.add({
            name: `${op.out}/kernel`,
            shape: [outF, inF],
            type: TensorType.INT8,
            data: bytesOf(pt.q),
            quantization: { scale: pt.scales, zeroPoint: [0] },
          });
          const bs = Math.fround(sIn * pt.scales[0]);
          bIdx = sb.add({
            name: `${op.out}/bias`,
            shape: [outF],
            type: TensorType.INT32,
            data: bytesOf(Int32Array.from(bias, (b) => Math.round(b / bs))),
            quantization: { scale: [bs], zeroPoint: [0] },
          });
        } else {
          kIdx = floatConst(`${op.out}/kernel`, [outF, inF], weights, variant === 'float16' && !keepFloat32(op));
          bIdx = floatConst(`${op.out}/bias`, [outF], bias);
        }
        sb.op(BuiltinOperator.FULLY_CONNECTED, int8 ? 4 : 1, [x, kIdx, bIdx], [out], {
          kind: 'fullyConnected',
          activation: fused ?? ActivationFunctionType.NONE,
        });
        shapes.set(preName, [outF]);
        value.set(op.out, out);
        if (fused === undefined) value.set(op.out, emitActivation(op.activation, out, op.out, [1, outF]));
        break;
      }
      case 'activation':
        value.set(op.out, emitActivation(op.activation, v(op.inputs[0]), op.out, outShape));
        break;
      default:
        fail(`op '${op.op}' (${op.out}) has no TFLite translation`);
    }
    shapes.set(op.out, op.shape);
  }

  function emitActivation(a: string, x: number, name: string, shape: number[]): number {
    // Softmax and logistic outputs in [0, 1]: TFLite's int8 kernels require scale 1/256, zero point -128.
    const unit = { scale: 1 / 256, zeroPoint: -128 };
    switch (a) {
      case 'linear':
        return x;
      case 'softmax': {
        const out = activation(name, shape, int8 ? unit : undefined);
        sb.op(BuiltinOperator.SOFTMAX, int8 ? 2 : 1, [x], [out], { kind: 'softmax', beta: 1 });
        return out;
      }
      case 'sigmoid': {
        const out = activation(name, shape, int8 ? unit : undefined);
        sb.op(BuiltinOperator.LOGISTIC, int8 ? 2 : 1, [x], [out], { kind: 'none' });
        return out;
      }
      case 'relu':
      case 'relu6': {
        const out = activation(name, shape);
        sb.op(a === 'relu' ? BuiltinOperator.RELU : BuiltinOperator.RELU6, int8 ? 2 : 1, [x], [out], { kind: 'none' });
        return out;
      }
      case 'tanh': {
        const out = activation(name, shape, int8 ? { scale: 1 / 128, zeroPoint: 0 } : undefined);
        sb.op(BuiltinOperator.TANH, int8 ? 2 : 1, [x], [out], { kind: 'none' });
        return out;
      }
    }
    return fail(`activation '${a}' has no TFLite translation`);
  }

  let output = v(graph.outputs[0]);
  if (int8) {
    const probs = sb.add({ name: 'probabilities', shape: [1, numClasses], type: TensorType.FLOAT32 });
    sb.op(BuiltinOperator.DEQUANTIZE, 2, [output], [probs], { kind: 'dequantize' });
    output = probs;
  } else {
    sb.tensors[output].name = 'probabilities';
  }
  if (sb.tensors[output].shape.length !== 2) {
    fail(`the output has shape [${sb.tensors[output].shape}], expected [1, ${numClasses}]`);
  }

  const meta = {
    format: `tflite${variant === 'float32' ? '' : `-${variant}`}`,
    classes: opts.classes,
    input: int8
      ? {
          name: 'image',
          shape: shape4,
          dtype: 'uint8',
          layout: 'NHWC',
          color: 'RGB',
          range: [0, 255],
          quantization: inputQuant,
          note: 'raw RGB pixels; the preprocessing is the input quantization (real = scale * (pixel - zeroPoint))',
        }
      : {
          name: 'image',
          shape: shape4,
          dtype: 'float32',
          layout: 'NHWC',
          color: 'RGB',
          range: [0, 255],
          preprocessing: firstRescale ?? 'in graph',
        },
    output: { name: 'probabilities', shape: [1, numClasses], dtype: 'float32', meaning: 'class probabilities in the order of `classes`' },
    ...(opts.extra ?? {}),
  };
  const enc = new TextEncoder();
  const spec: ModelSpec = {
    description: `edgetune classifier (${opts.classes.length} classes: ${opts.classes.join(', ')}), ${meta.format}`,
    tensors: sb.tensors,
    inputs: [inputIndex],
    outputs: [output],
    ops: sb.ops,
    metadata: [
      { name: 'edgetune', data: enc.encode(JSON.stringify(meta)) },
      { name: 'labels', data: enc.encode(`${opts.classes.join('\n')}\n`) },
    ],
  };
  return serializeModel(spec);
}

/** The labels file written beside a .tflite model: one class name per line, in output order. */
export function labelsFile(classes: string[]): string {
  return `${classes.join('\n')}\n`;
}

export type { Quantization };
