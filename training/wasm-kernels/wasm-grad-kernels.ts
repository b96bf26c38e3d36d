// Gradient kernels the tfjs WASM backend lacks (Conv2DBackpropFilter, DepthwiseConv2dNative-
// BackpropFilter/Input) plus a fast 1x1 path for its slow Conv2DBackpropInput, and one fused
// helper kernel (ReLU6 gradient from the forward output) used by the fast tail.
//
// Kernels are composed from the WASM backend's own kernels (called directly with the backend,
// as the backend's kernels call each other) where a matrix product does the work, and as
// WebAssembly SIMD loops over the backend's heap (wasm-simd.ts) where the work is a per-channel
// multiply-add; plain JS loops remain for the cpu backend and the rare shapes the SIMD path skips.
//
// Measured (alpha 1.0 shapes, one thread, shared machine): a 1x1 convolution gradient as explicit
// Transpose then BatchMatMul takes ~21 ms against ~240 ms for BatchMatMul with a transpose flag and
// ~216 ms for the backend's Conv2DBackpropInput. Depthwise 3x3 on 32x7x7x960: the input gradient
// as a WASM depthwise convolution with the flipped filter ~8-30 ms against ~115 ms as a JS loop;
// the filter gradient as an unrolled JS loop ~50-70 ms (per-tap WASM slice/multiply/sum ~70-105 ms,
// a batch-folded dilated WASM convolution ~120-370 ms: both slower); as SIMD multiply-accumulate
// rows ~3 ms (16x7x7x960: 1.4 ms against 13.6 ms for the unrolled JS loop, best of 15). ReLU6
// gradient on 16x7x7x960: SIMD 0.5 ms, branch-free JS 2.7 ms.

import type { KernelConfig, KernelFunc, NamedAttrMap, TensorInfo } from '@tensorflow/tfjs';
import { tf } from '../../core/tf.js';
import {
  cpuInternals,
  heapOffset,
  makeResident,
  runKernel,
  type WasmBackendInternals,
  wasmInternals,
  wasmMemory,
} from '../../core/tfjs-internals.js';
import { type SimdLoops, simdLoops } from './wasm-simd.js';

type WasmBackend = WasmBackendInternals;

/** Name of the column-sum kernel: out[j] = sum_p x[p, j] of a [P, C] float32 tensor, summed over p in order from 0. */
export const COLUMN_SUMS = 'EdgetuneColumnSums';

/**
 * Name of the fused Adam update: inputs w, g, m, v (float32, one shape), attrs b1 c1 b2 c2 oma1 oma2
 * eps negLr (float32 values, see wasm-simd.ts `adam`); outputs [w', m', v'] (training/fused-adam.ts).
 */
export const ADAM_UPDATE = 'EdgetuneAdamUpdate';

/** Name of the fused kernel: dx = dy where 0 < y < 6 (y = ReLU6 output), else 0. */
export const RELU6_GRAD_FROM_OUTPUT = 'EdgetuneRelu6GradFromOutput';

type ConvInfo = ReturnType<typeof tf.backend_util.computeConv2DInfo>;

function call(name: string, backend: unknown, inputs: Record<string, TensorInfo>, attrs: NamedAttrMap = {}): TensorInfo {
  const k = tf.getKernel(name, 'wasm');
  if (!k) throw new Error(`wasm kernel ${name} is not registered`);
  return (k.kernelFunc as KernelFunc)({ inputs, backend: backend as never, attrs }) as TensorInfo;
}

function reshaped(t: TensorInfo, shape: number[]): TensorInfo {
  // A view with another shape over the same data; WASM kernels only read `shape` from it.
  return { dataId: t.dataId, dtype: t.dtype, shape };
}

function isPointwise(info: ConvInfo): boolean {
  return (
    info.filterHeight === 1 &&
    info.filterWidth === 1 &&
    info.strideHeight === 1 &&
    info.strideWidth === 1 &&
    info.padInfo.top === 0 &&
    info.padInfo.left === 0 &&
    info.padInfo.bottom === 0 &&
    info.padInfo.right === 0 &&
    info.dataFormat === 'channelsLast'
  );
}

/** a[m,k] @ b[k,n] on WASM where only a^T or b^T is at hand: explicit transpose, then a plain product. */
function matMulT(backend: WasmBackend, a: TensorInfo, b: TensorInfo, transposeA: boolean, transposeB: boolean): TensorInfo {
  let aa = a;
  let bb = b;
  if (transposeA) aa = call('Transpose', backend, { x: a }, { perm: [1, 0] });
  if (transposeB) bb = call('Transpose', backend, { x: b }, { perm: [1, 0] });
  const out = call('BatchMatMul', backend, { a: aa, b: bb }, { transposeA: false, transposeB: false });
  if (transposeA) backend.disposeData(aa.dataId);
  if (transposeB) backend.disposeData(bb.dataId);
  return out;
}

function conv2DBackpropFilter({ inputs, backend, attrs }: Parameters<KernelFunc>[0]): TensorInfo {
  const be = wasmInternals(backend);
  const { x, dy } = inputs as { x: TensorInfo; dy: TensorInfo };
  const { strides, pad, dataFormat, dimRoundingMode, filterShape } = attrs as unknown as {
    strides: [number, number] | number;
    pad: 'same' | 'valid' | number;
    dataFormat: 'NHWC' | 'NCHW';
    dimRoundingMode?: 'floor' | 'round' | 'ceil';
    filterShape: [number, number, number, number];
  };
  const fmt = tf.backend_util.convertConv2DDataFormat(dataFormat);
  const info = tf.backend_util.computeConv2DInfo(x.shape as never, filterShape, strides, 1, pad, dimRoundingMode, false, fmt);
  if (info.dataFormat !== 'channelsLast') throw new Error('Conv2DBackpropFilter (wasm): only NHWC is supported');
  const { inChannels, outChannels, outHeight, outWidth, batchSize } = info;
  const P = batchSize * outHeight * outWidth;
  if (isPointwise(info)) {
    // dW[ci, co] = sum_p x[p, ci] dy[p, co].
    const x2 = reshaped(x, [P, inChannels]);
    const dy2 = reshaped(dy, [P, outChannels]);
    // XNNPACK packs the right-hand side anew on every call: the product packs the narrower one
    // (the same bits either way: each sum runs over p in order).
    if (inChannels >= outChannels) {
      const out = matMulT(be, x2, dy2, true, false);
      return reshaped(out, filterShape);
    }
    const dwT = matMulT(be, dy2, x2, true, false); // [co, ci]
    const out = call('Transpose', be, { x: dwT }, { perm: [1, 0] });
    be.disposeData(dwT.dataId);
    return reshaped(out, filterShape);
  }
  // General filter: per filter tap, gather the strided input patch [P, ci] and multiply by dy.
  makeResident(be, [x]); // before any heap view (see accessor)
  const { filterHeight: fh, filterWidth: fw, strideHeight: sh, strideWidth: sw, inHeight, inWidth } = info;
  const top = info.padInfo.top;
  const left = info.padInfo.left;
  const out = be.makeOutput(filterShape, 'float32');
  const dy2 = reshaped(dy, [P, outChannels]);
  const taps: TensorInfo[] = [];
  for (let kh = 0; kh < fh; kh++) {
    for (let kw = 0; kw < fw; kw++) {
      const patch = be.makeOutput([P, inChannels], 'float32');
      const xv = be.typedArrayFromHeap(x);
      const pv = be.typedArrayFromHeap(patch);
      let p = 0;
      for (let b = 0; b < batchSize; b++) {
        for (let oh = 0; oh < outHeight; oh++) {
          const ih = oh * sh + kh - top;
          for (let ow = 0; ow < outWidth; ow++, p++) {
            const iw = ow * sw + kw - left;
            const dst = p * inChannels;
            if (ih < 0 || ih >= inHeight || iw < 0 || iw >= inWidth) {
              pv.fill(0, dst, dst + inChannels);
            } else {
              const src = ((b * inHeight + ih) * inWidth + iw) * inChannels;
              pv.set(xv.subarray(src, src + inChannels), dst);
            }
          }
        }
      }
      taps.push(matMulT(be, patch, dy2, true, false)); // [ci, co]
      be.disposeData(patch.dataId);
    }
  }
  const ov = be.typedArrayFromHeap(out);
  const tapSize = inChannels * outChannels;
  taps.forEach((t, i) => {
    ov.set(be.typedArrayFromHeap(t), i * tapSize);
    be.disposeData(t.dataId);
  });
  return out;
}

let wasmConv2DBackpropInput: KernelFunc | undefined;

function conv2DBackpropInput(args: Parameters<KernelFunc>[0]): TensorInfo {
  const { inputs, backend, attrs } = args;
  const be = wasmInternals(backend);
  const { dy, filter } = inputs as { dy: TensorInfo; filter: TensorInfo };
  const { strides, pad, dataFormat, dimRoundingMode, inputShape } = attrs as unknown as {
    strides: [number, number] | number;
    pad: 'same' | 'valid' | number;
    dataFormat: 'NHWC' | 'NCHW';
    dimRoundingMode?: 'floor' | 'round' | 'ceil';
    inputShape: [number, number, number, number];
  };
  const fmt = tf.backend_util.convertConv2DDataFormat(dataFormat);
  const info = tf.backend_util.computeConv2DInfo(inputShape, filter.shape as never, strides, 1, pad, dimRoundingMode, false, fmt);
  if (!isPointwise(info)) {
    if (!wasmConv2DBackpropInput) throw new Error('wasm Conv2DBackpropInput missing');
    return wasmConv2DBackpropInput(args) as TensorInfo;
  }
  const P = info.batchSize * info.outHeight * info.outWidth;
  // dx[p, ci] = sum_co dy[p, co] w[ci, co]
  const out = matMulT(be, reshaped(dy, [P, info.outChannels]), reshaped(filter, [info.inChannels, info.outChannels]), false, true);
  return reshaped(out, inputShape);
}

interface DepthwiseAttrs {
  strides: [number, number] | number;
  pad: 'same' | 'valid' | number;
  dilations?: [number, number] | number;
  dimRoundingMode?: 'floor' | 'round' | 'ceil';
}

/**
 * Heap access that works for the wasm and the cpu backend (the fused kernel runs on both).
 * `inputs` are made resident first: the backend moves a tensor created on another backend
 * lazily, on first access, and that allocation can grow the WASM memory, which detaches every
 * heap view taken before it. So: inputs resident, then allocate, then take views.
 */
function accessor(backend: unknown, name: string, inputs: TensorInfo[]) {
  if (name === 'wasm') {
    const be = wasmInternals(backend);
    makeResident(be, inputs);
    return {
      alloc: (shape: number[]) => be.makeOutput(shape, 'float32'),
      view: (t: TensorInfo) => be.typedArrayFromHeap(t),
      finish: (t: TensorInfo) => t,
    };
  }
  const be = cpuInternals(backend);
  const pending = new Map<TensorInfo, Float32Array>();
  return {
    alloc: (shape: number[]) => {
      const t = { dataId: {}, shape, dtype: 'float32' } as TensorInfo;
      pending.set(t, new Float32Array(shape.reduce((a, b) => a * b, 1)));
      return t;
    },
    view: (t: TensorInfo) => pending.get(t) ?? be.data.get(t.dataId).values,
    finish: (t: TensorInfo) => be.makeTensorInfo(t.shape, 'float32', pending.get(t) as Float32Array),
  };
}

function depthwiseInfo(xShape: number[], filterShape: number[], a: DepthwiseAttrs): ConvInfo {
  return tf.backend_util.computeConv2DInfo(
    xShape as [number, number, number, number],
    filterShape as [number, number, number, number],
    a.strides,
    a.dilations ?? 1,
    a.pad,
    a.dimRoundingMode,
    true,
  );
}

/** The SIMD loops over this backend's heap, and byte offsets of tensors in it (inputs made resident). */
function heapSimd(backend: unknown, inputs: TensorInfo[]): { loops: SimdLoops; at(t: TensorInfo): number } | undefined {
  const memory = wasmMemory(backend);
  const loops = memory && simdLoops(memory);
  if (!loops) return undefined;
  makeResident(backend, inputs);
  return { loops, at: (t) => heapOffset(backend, t) };
}

type Pad4 = [[number, number], [number, number], [number, number], [number, number]];

/** dx of a stride-1 depthwise convolution as one WASM depthwise convolution with the flipped filter. */
function depthwiseInputGradWasm(be: WasmBackend, dy: TensorInfo, filter: TensorInfo, info: ConvInfo): TensorInfo | undefined {
  const { inHeight: h, inWidth: w, inChannels: c, outHeight: oh, outWidth: ow, filterHeight: kh, filterWidth: kw } = info;
  if (
    info.outChannels !== c ||
    info.strideHeight !== 1 ||
    info.strideWidth !== 1 ||
    info.dilationHeight !== 1 ||
    info.dilationWidth !== 1
  ) {
    return undefined;
  }
  const pt = kh - 1 - info.padInfo.top;
  const pl = kw - 1 - info.padInfo.left;
  const pb = h - oh + kh - 1 - pt;
  const pr = w - ow + kw - 1 - pl;
  if (pt < 0 || pl < 0 || pb < 0 || pr < 0) return undefined;
  const flipped = call('Reverse', be, { x: filter }, { dims: [0, 1] });
  const pad: Pad4 = [
    [0, 0],
    [pt, pb],
    [pl, pr],
    [0, 0],
  ];
  const out = call(
    'DepthwiseConv2dNative',
    be,
    { x: dy, filter: flipped },
    { strides: [1, 1], dilations: [1, 1], pad: pad as never, dimRoundingMode: undefined as never },
  );
  be.disposeData(flipped.dataId);
  return out;
}

/**
 * Every (output pixel, filter tap) pair of a convolution whose input pixel is inside the input:
 * `visit(inputPixel, outputPixel, tap)` with linear pixel indices (b, h, w) and tap = kh * fw + kw.
 */
function forEachTap(info: ConvInfo, visit: (inPixel: number, outPixel: number, tap: number) => void): void {
  const { batchSize, inHeight, inWidth, outHeight, outWidth } = info;
  const { filterHeight: fh, filterWidth: fw, strideHeight: sh, strideWidth: sw, dilationHeight: dh, dilationWidth: dwid } = info;
  const top = info.padInfo.top;
  const left = info.padInfo.left;
  for (let b = 0; b < batchSize; b++) {
    for (let oh = 0; oh < outHeight; oh++) {
      for (let ow = 0; ow < outWidth; ow++) {
        const outPixel = (b * outHeight + oh) * outWidth + ow;
        for (let kh = 0; kh < fh; kh++) {
          const ih = oh * sh + kh * dh - top;
          if (ih < 0 || ih >= inHeight) continue;
          for (let kw = 0; kw < fw; kw++) {
            const iw = ow * sw + kw * dwid - left;
            if (iw >= 0 && iw < inWidth) visit((b * inHeight + ih) * inWidth + iw, outPixel, kh * fw + kw);
          }
        }
      }
    }
  }
}

/** dW of a depthwise convolution (channel multiplier 1) with SIMD multiply-accumulate rows over the heap. */
function depthwiseFilterGradSimd(backend: unknown, x: TensorInfo, dy: TensorInfo, info: ConvInfo): TensorInfo | undefined {
  const simdHeap = heapSimd(backend, [x, dy]);
  if (!simdHeap || info.outChannels !== info.inChannels) return undefined;
  const be = wasmInternals(backend);
  const out = be.makeOutput(info.filterShape, 'float32');
  be.typedArrayFromHeap(out).fill(0);
  const { loops, at } = simdHeap;
  const [xAt, dyAt, outAt] = [at(x), at(dy), at(out)];
  const row = info.inChannels * 4; // bytes per pixel (and per tap of the filter)
  forEachTap(info, (inPixel, outPixel, tap) =>
    loops.mulAcc(outAt + tap * row, xAt + inPixel * row, dyAt + outPixel * row, info.inChannels),
  );
  return out;
}

function makeDepthwiseBackpropFilter(backendName: string): KernelFunc {
  return ({ inputs, backend, attrs }) => {
    const { x, dy } = inputs as { x: TensorInfo; dy: TensorInfo };
    const a = attrs as unknown as DepthwiseAttrs & { filterShape: number[] };
    const info = depthwiseInfo(x.shape, a.filterShape, a);
    if (backendName === 'wasm') {
      const out = depthwiseFilterGradSimd(backend, x, dy, info);
      if (out) return out;
    }
    const io = accessor(backend, backendName, [x, dy]);
    const out = io.alloc(info.filterShape);
    const dw = io.view(out);
    const xv = io.view(x);
    const dyv = io.view(dy);
    dw.fill(0);
    const { batchSize, inHeight, inWidth, inChannels: C, outChannels: OC, outHeight, outWidth } = info;
    const { filterHeight: fh, filterWidth: fw, strideHeight: sh, strideWidth: sw, dilationHeight: dh, dilationWidth: dwid } = info;
    const top = info.padInfo.top;
    const left = info.padInfo.left;
    const mul = OC / C;
    // float64 accumulators: sums run over up to N*H*W products
    const acc = new Float64Array(fh * fw * OC);
    const rowStride = inWidth * C;
    for (let b = 0; b < batchSize; b++) {
      for (let oh = 0; oh < outHeight; oh++) {
        for (let ow = 0; ow < outWidth; ow++) {
          const dyOff = ((b * outHeight + oh) * outWidth + ow) * OC;
          const ih0 = oh * sh - top;
          const iw0 = ow * sw - left;
          const interior = ih0 >= 0 && iw0 >= 0 && ih0 + (fh - 1) * dh < inHeight && iw0 + (fw - 1) * dwid < inWidth;
          if (interior && mul === 1 && fh === 3 && fw === 3 && dh === 1 && dwid === 1) {
            // The common case, unrolled: dy read once for the nine taps.
            const r0 = ((b * inHeight + ih0) * inWidth + iw0) * C;
            const r1 = r0 + rowStride;
            const r2 = r1 + rowStride;
            for (let c = 0; c < C; c++) {
              const d = dyv[dyOff + c];
              acc[c] += xv[r0 + c] * d;
              acc[C + c] += xv[r0 + C + c] * d;
              acc[2 * C + c] += xv[r0 + 2 * C + c] * d;
              acc[3 * C + c] += xv[r1 + c] * d;
              acc[4 * C + c] += xv[r1 + C + c] * d;
              acc[5 * C + c] += xv[r1 + 2 * C + c] * d;
              acc[6 * C + c] += xv[r2 + c] * d;
              acc[7 * C + c] += xv[r2 + C + c] * d;
              acc[8 * C + c] += xv[r2 + 2 * C + c] * d;
            }
            continue;
          }
          for (let kh = 0; kh < fh; kh++) {
            const ih = ih0 + kh * dh;
            if (ih < 0 || ih >= inHeight) continue;
            for (let kw = 0; kw < fw; kw++) {
              const iw = iw0 + kw * dwid;
              if (iw < 0 || iw >= inWidth) continue;
              const xOff = ((b * inHeight + ih) * inWidth + iw) * C;
              const wOff = (kh * fw + kw) * OC;
              if (mul === 1) {
                for (let c = 0; c < C; c++) acc[wOff + c] += xv[xOff + c] * dyv[dyOff + c];
              } else {
                for (let c = 0; c < C; c++) {
                  const xc = xv[xOff + c];
                  for (let q = 0; q < mul; q++) acc[wOff + c * mul + q] += xc * dyv[dyOff + c * mul + q];
                }
              }
            }
          }
        }
      }
    }
    dw.set(acc);
    return io.finish(out);
  };
}

function makeDepthwiseBackpropInput(backendName: string): KernelFunc {
  return ({ inputs, backend, attrs }) => {
    const { dy, filter } = inputs as { dy: TensorInfo; filter: TensorInfo };
    const a = attrs as unknown as DepthwiseAttrs & { inputShape: number[] };
    const info = depthwiseInfo(a.inputShape, filter.shape, a);
    if (backendName === 'wasm') {
      const out = depthwiseInputGradWasm(wasmInternals(backend), dy, filter, info);
      if (out) return out;
    }
    const io = accessor(backend, backendName, [dy, filter]);
    const out = io.alloc(info.inShape);
    const dx = io.view(out);
    const wv = io.view(filter);
    const dyv = io.view(dy);
    dx.fill(0);
    const { inChannels: C, outChannels: OC } = info;
    const mul = OC / C;
    // Scatter form: every output position adds dy * w into the input positions it read.
    forEachTap(info, (inPixel, outPixel, tap) => {
      const xOff = inPixel * C;
      const dyOff = outPixel * OC;
      const wOff = tap * OC;
      if (mul === 1) {
        for (let c = 0; c < C; c++) dx[xOff + c] += dyv[dyOff + c] * wv[wOff + c];
      } else {
        for (let c = 0; c < C; c++) {
          let s = 0;
          for (let q = 0; q < mul; q++) s += dyv[dyOff + c * mul + q] * wv[wOff + c * mul + q];
          dx[xOff + c] += s;
        }
      }
    });
    return io.finish(out);
  };
}

/**
 * Column sums of [P, C] on WASM, each summed over p in order from zero: bit for bit what
 * ones[1, P] @ x gives there (XNNPACK's product), without packing x as the product's right-hand
 * side on every call (for a bias gradient that packing is most of the product's time).
 */
function columnSums({ inputs, backend }: Parameters<KernelFunc>[0]): TensorInfo {
  const { x } = inputs as { x: TensorInfo };
  if (x.shape.length !== 2 || x.dtype !== 'float32') throw new Error(`${COLUMN_SUMS}: a float32 [P, C] tensor expected; got [${x.shape}]`);
  const [p, c] = x.shape;
  const be = wasmInternals(backend);
  const simdHeap = heapSimd(backend, [x]);
  const out = be.makeOutput([c], 'float32');
  if (simdHeap) {
    const ones = be.makeOutput([c], 'float32');
    be.typedArrayFromHeap(out).fill(0);
    be.typedArrayFromHeap(ones).fill(1);
    const { loops, at } = simdHeap;
    const [xAt, outAt, onesAt] = [at(x), at(out), at(ones)];
    // acc += 1 * row: the product is exact, so each step is one float32 addition.
    for (let r = 0; r < p; r++) loops.mulAcc(outAt, onesAt, xAt + r * c * 4, c);
    be.disposeData(ones.dataId);
    return out;
  }
  makeResident(be, [x]);
  const xv = be.typedArrayFromHeap(x);
  const ov = be.typedArrayFromHeap(out);
  ov.fill(0);
  for (let r = 0; r < p; r++) for (let j = 0; j < c; j++) ov[j] += xv[r * c + j];
  return out;
}

const SIX_BITS = new Int32Array(new Float32Array([6]).buffer)[0];

function int32View(f: Float32Array): Int32Array {
  return new Int32Array(f.buffer, f.byteOffset, f.length);
}

function makeRelu6GradFromOutput(backendName: string): KernelFunc {
  return ({ inputs, backend }) => {
    const { dy, y } = inputs as { dy: TensorInfo; y: TensorInfo };
    const simdHeap = backendName === 'wasm' ? heapSimd(backend, [dy, y]) : undefined;
    if (simdHeap) {
      const out = wasmInternals(backend).makeOutput(dy.shape, 'float32');
      simdHeap.loops.relu6Grad(simdHeap.at(out), simdHeap.at(dy), simdHeap.at(y), tf.util.sizeFromShape(dy.shape));
      return out;
    }
    const io = accessor(backend, backendName, [dy, y]);
    const out = io.alloc(dy.shape);
    const o = int32View(io.view(out));
    const d = int32View(io.view(dy));
    const yv = int32View(io.view(y));
    // On the float bits, branch-free (~3x faster than a compare-and-branch loop: the ReLU6 pattern
    // defeats branch prediction): 0 < y < 6 <=> 1 <= bits(y) <= bits(6) - 1 as int32 (NaN, -0 and
    // negatives fall outside), and the sign bit of (bits - 1) | (bits(6) - 1 - bits) says which.
    const six1 = SIX_BITS - 1;
    for (let i = 0; i < o.length; i++) {
      const b = yv[i];
      o[i] = d[i] & ~(((b - 1) | (six1 - b)) >> 31);
    }
    return io.finish(out);
  };
}

export interface AdamScalars {
  b1: number;
  c1: number;
  b2: number;
  c2: number;
  oma1: number;
  oma2: number;
  eps: number;
  negLr: number;
}

function adamUpdate({ inputs, backend, attrs }: Parameters<KernelFunc>[0]): TensorInfo[] {
  const { w, g, m, v } = inputs as { w: TensorInfo; g: TensorInfo; m: TensorInfo; v: TensorInfo };
  const n = tf.util.sizeFromShape(w.shape);
  for (const t of [g, m, v]) {
    if (tf.util.sizeFromShape(t.shape) !== n) throw new Error(`${ADAM_UPDATE}: shapes differ, [${w.shape}] and [${t.shape}]`);
  }
  for (const t of [w, g, m, v]) if (t.dtype !== 'float32') throw new Error(`${ADAM_UPDATE}: float32 only, got ${t.dtype}`);
  const a = attrs as unknown as AdamScalars;
  const be = wasmInternals(backend);
  // Outputs first: an allocation can grow the heap (offsets stay valid, views do not).
  const outs = [w, m, v].map((t) => be.makeOutput(t.shape, 'float32'));
  const simdHeap = heapSimd(backend, [w, g, m, v]);
  if (!simdHeap) throw new Error(`${ADAM_UPDATE}: needs WebAssembly SIMD (fusedAdamAvailable)`);
  const at = simdHeap.at;
  simdHeap.loops.adam(
    at(outs[0]),
    at(outs[1]),
    at(outs[2]),
    at(w),
    at(g),
    at(m),
    at(v),
    n,
    a.b1,
    a.c1,
    a.b2,
    a.c2,
    a.oma1,
    a.oma2,
    a.eps,
    a.negLr,
  );
  return outs;
}

/** Whether ADAM_UPDATE runs here: the WASM backend is current and its heap takes the SIMD loops. */
export function fusedAdamAvailable(): boolean {
  registerWasmGradKernels();
  if (tf.getBackend() !== 'wasm') return false;
  const memory = wasmMemory(tf.backend());
  return Boolean(memory && simdLoops(memory));
}

/**
 * Identity that shares the input's data, as the cpu backend's does, instead of copying it. The
 * engine clones (Identity) every tensor a gradient saves, so a phase-2 step copied ~40 ms of
 * activations on WASM. Sharing is safe because no WASM kernel writes into its inputs (Reshape
 * shares data the same way) and a variable's assign swaps its data rather than overwriting it.
 */
function makeSharedIdentity(original: KernelFunc): KernelFunc {
  return (args) => {
    const x = args.inputs.x as TensorInfo;
    if (x.dtype === 'string') return original(args);
    (args.backend as { incRef(dataId: object): void }).incRef(x.dataId);
    return { dataId: x.dataId, shape: x.shape, dtype: x.dtype };
  };
}

function register(config: KernelConfig): void {
  if (tf.getKernel(config.kernelName, config.backendName)) tf.unregisterKernel(config.kernelName, config.backendName);
  tf.registerKernel(config);
}

let registered = false;

/**
 * Registers the gradient kernels the WASM backend lacks, a 1x1 fast path for its
 * Conv2DBackpropInput, and the fused ReLU6-gradient kernel (wasm and cpu). Idempotent; safe to
 * call before or after the backend is initialised.
 */
export function registerWasmGradKernels(): void {
  if (registered) return;
  registered = true;
  const original = tf.getKernel('Conv2DBackpropInput', 'wasm');
  if (original) wasmConv2DBackpropInput = original.kernelFunc as KernelFunc;
  register({ kernelName: 'Conv2DBackpropFilter', backendName: 'wasm', kernelFunc: conv2DBackpropFilter as KernelFunc });
  if (original) {
    register({ ...original, kernelName: 'Conv2DBackpropInput', backendName: 'wasm', kernelFunc: conv2DBackpropInput as KernelFunc });
  }
  register({ kernelName: 'DepthwiseConv2dNativeBackpropFilter', backendName: 'wasm', kernelFunc: makeDepthwiseBackpropFilter('wasm') });
  register({ kernelName: 'DepthwiseConv2dNativeBackpropInput', backendName: 'wasm', kernelFunc: makeDepthwiseBackpropInput('wasm') });
  for (const backendName of ['wasm', 'cpu']) {
    register({ kernelName: RELU6_GRAD_FROM_OUTPUT, backendName, kernelFunc: makeRelu6GradFromOutput(backendName) });
  }
  register({ kernelName: COLUMN_SUMS, backendName: 'wasm', kernelFunc: columnSums as KernelFunc });
  register({ kernelName: ADAM_UPDATE, backendName: 'wasm', kernelFunc: adamUpdate as unknown as KernelFunc });
  const identity = tf.getKernel('Identity', 'wasm');
  if (identity) register({ ...identity, kernelFunc: makeSharedIdentity(identity.kernelFunc as KernelFunc) });
}

/** Column sums of [P, C]: the WASM kernel, elsewhere ones[1, P] @ x (a matrix-vector product beats Sum over axis 0 on WASM). */
export function columnSumsOf(x: tf.Tensor2D): tf.Tensor1D {
  registerWasmGradKernels();
  const [p, c] = x.shape;
  if (!tf.getKernel(COLUMN_SUMS, tf.getBackend())) return tf.tidy(() => tf.reshape(tf.matMul(tf.ones([1, p]) as tf.Tensor2D, x), [c]));
  return runKernel<tf.Tensor1D>(COLUMN_SUMS, { x });
}

/** dy masked where the ReLU6 output y is strictly inside (0, 6): ReLU6's gradient without its input. */
export function relu6GradFromOutput<T extends tf.Tensor>(dy: T, y: T): T {
  registerWasmGradKernels();
  if (!tf.getKernel(RELU6_GRAD_FROM_OUTPUT, tf.getBackend())) {
    // Other backends (tfjs-node): the same mask from ops.
    return tf.tidy(() => tf.mul(dy, tf.cast(tf.logicalAnd(tf.greater(y, 0), tf.less(y, 6)), dy.dtype))) as T;
  }
  return runKernel<T>(RELU6_GRAD_FROM_OUTPUT, { dy, y });
}
