// Phase-2 training of the layers above the freeze boundary, on cached boundary activations.
//
// Two routes compute the same function:
// - `fast` (default on WASM/cpu): the tail re-expressed with ops whose forward and backward
//   kernels are fast on WASM. Each convolution + inference-mode BatchNorm (+ ReLU6) is one fused
//   unit: the BN scale is folded into the kernel (W * gamma / sqrt(var + eps)), the BN shift is the
//   fused bias, a 1x1 convolution is a matrix product over pixels, and its gradient uses explicit
//   transposes and plain products. BN moving statistics are constants, never updated.
// - `layers` (default on tfjs-node): the model's own layers applied eagerly with
//   `training: false`, with the registered WASM gradient kernels where WASM is the backend.
// Both train the same weights; `writeBack()` copies the fast route's copies into the model's
// layers (same names), so the exported model stays the standard layers model.
import type { GradSaveFunc, LayerVariable, NamedTensorMap, Tensor, Tensor1D, Tensor2D, Tensor4D } from '@tensorflow/tfjs';
import { HEAD } from '../../core/classifier.js';
import type { EngineName } from '../../core/engine/engine.js';
import { ortGemm } from '../../core/engine/ort-gemm.js';
import { type ConvStructure, graphStructure, type OpStructure, type Pads } from '../../core/graph/fused-graph.js';
import { classTargets, correctPredictions, logitUnits } from '../../core/head-convention.js';
import type { LayersModel } from '../../core/tf.js';
import { tf } from '../../core/tf.js';
import { runKernel } from '../../core/tfjs-internals.js';
import { weightedClassificationLoss } from '../class-weights.js';
import { columnSumsOf, registerWasmGradKernels, relu6GradFromOutput } from '../wasm-kernels/wasm-grad-kernels.js';
import { boundaryLayerName } from './base-layers.js';

export { baseLayerNames, boundaryLayerName } from './base-layers.js';

export type TailRoute = 'fast' | 'layers';

export interface TailOptions {
  /** Keras base index of the first trainable layer (the notebook's `fine_tune_at`); default 120. */
  fineTuneAt?: number;
  numClasses: number;
  /** Dropout rate before the logits in training; default: the model's dropout layer rate, else 0.2. */
  dropout?: number;
  /** Seeds the dropout masks (one stream per tail), so a run is reproducible; default unseeded. */
  seed?: number;
  /** Default: `layers` on tfjs-node (native kernels are fast), `fast` elsewhere. */
  route?: TailRoute;
  /** Loss weight per class (--class-weight; labels must be class indices); default: the plain mean loss. */
  classWeights?: number[];
  /** Dropout draws already taken from the seeded stream (one per training step): a resumed run continues it. */
  dropoutDrawsDone?: number;
  /**
   * Where the fast route's 1x1 convolution products (forward and both gradients) run: tfjs WASM
   * (XNNPACK, the default) or onnxruntime's CPU kernels (core/engine/ort-gemm.ts). Other ops stay on tfjs.
   */
  gemm?: EngineName;
}

// A type alias (not an interface) so it can be returned from tf.tidy.
export type TrainStepResult = {
  /** Mean loss over the batch (before the update). */
  loss: number;
  /** Number of correctly classified rows in the batch (before the update). */
  correct: number;
};

export type GradientsResult = TrainStepResult & {
  /** d loss / d variable, in `trainableVariables` order; the caller disposes them. */
  grads: Tensor[];
};

export interface Tail {
  readonly route: TailRoute;
  /** Where the 1x1 convolutions' products run (TailOptions.gemm). */
  readonly gemm: EngineName;
  /** Name of the classifier layer whose output feeds the tail. */
  readonly boundaryName: string;
  /** Shape of one boundary activation, [h, w, c]. */
  readonly boundaryShape: [number, number, number];
  /** Tail conv/depthwise kernels, gamma/beta of the tail's BatchNorms, head kernel and bias. */
  readonly trainableVariables: tf.Variable[];
  /** `<layer>/<weight>` of each trainable variable, same order. */
  readonly variableNames: string[];
  /** Logits [N, units]; dropout only when `training`; BatchNorm always in inference mode. */
  logits(boundary: Tensor4D, training: boolean): Tensor2D;
  /** Pooled features [N, C] (GlobalAveragePooling output), inference mode: phase 1's input. */
  features(boundary: Tensor4D): Tensor2D;
  /** One optimizer step over `trainableVariables` only. labels: class indices [N] (0/1 for 2 classes). */
  trainStep(boundary: Tensor4D, labels: Tensor, optimizer: tf.Optimizer): TrainStepResult;
  /**
   * Loss gradients without applying them (e.g. to average gradients over workers).
   * `dropoutMask` [N, features] replaces the drawn dropout mask (values 0 or 1/(1-rate)), so a
   * batch split over threads can use rows of one mask drawn by `dropoutMask(N)`.
   */
  computeGradients(boundary: Tensor4D, labels: Tensor, training?: boolean, dropoutMask?: Tensor2D): GradientsResult;
  /**
   * The next dropout mask [n, features] of this tail's (seeded) stream: exactly the multiplier the
   * next training forward pass would draw. Undefined when the dropout rate is 0. The caller disposes it.
   */
  dropoutMask(n: number): Tensor2D | undefined;
  /** Applies gradients in `trainableVariables` order (does not dispose them). */
  applyGradients(grads: Tensor[], optimizer: tf.Optimizer): void;
  /** Copies the trained values into the model's layers (no-op for the `layers` route). */
  writeBack(): void;
  dispose(): void;
}

type AnyLayer = LayersModel['layers'][number];
interface LayerConfig {
  [key: string]: unknown;
}

interface TailGraph {
  /** The fused graph's ops from the boundary up to `logits` (core/graph: the same grouping as inference). */
  ops: OpStructure[];
  /** The Keras layers of those ops, in model order. */
  layers: AnyLayer[];
  logitsName: string;
}

/** The ops from the boundary up to `logits`, in model order, checked to depend on the boundary only. */
function tailGraph(model: LayersModel, boundaryName: string): TailGraph {
  if (!model.layers.some((l) => l.name === boundaryName)) throw new Error(`boundary layer ${boundaryName} is not in the model`);
  if (!model.layers.some((l) => l.name === HEAD.logits))
    throw new Error(`the model has no '${HEAD.logits}' layer: not a buildClassifier model`);
  const structure = graphStructure(model, { keep: [boundaryName, HEAD.logits], inputRescale: 'none' });
  const start = structure.ops.findIndex((o) => o.out === boundaryName);
  const inTail = new Set([boundaryName]);
  const ops: OpStructure[] = [];
  for (const op of structure.ops.slice(start + 1)) {
    if (!op.inputs.some((n) => inTail.has(n))) continue;
    const outside = op.inputs.filter((n) => !inTail.has(n));
    if (outside.length) {
      throw new Error(
        `layer ${op.layers[0] ?? op.out} also reads ${outside.join(', ')}, below the freeze boundary ${boundaryName}: ` +
          'the tail cannot be computed from the cached boundary alone; choose a fineTuneAt at a block boundary',
      );
    }
    inTail.add(op.out);
    ops.push(op);
    if (op.out === HEAD.logits) break;
  }
  if (ops.at(-1)?.out !== HEAD.logits) throw new Error(`'${HEAD.logits}' is not reachable from ${boundaryName}`);
  const names = new Set(ops.flatMap((o) => o.layers));
  return { ops, layers: model.layers.filter((l) => names.has(l.name)), logitsName: HEAD.logits };
}

/** `block_13_expand_BN/gamma_1` -> `gamma` (tfjs appends `_N` to repeated weight names). */
function shortName(w: LayerVariable): string {
  return (w.originalName.split('/').at(-1) ?? '').replace(/:\d+$/, '').replace(/_\d+$/, '');
}

function weightOf(layer: AnyLayer, short: string): LayerVariable | undefined {
  return layer.weights.find((w) => shortName(w) === short);
}

const TRAINABLE = new Set(['kernel', 'depthwise_kernel', 'bias', 'gamma', 'beta']);

function trainableWeightsOf(layer: AnyLayer): LayerVariable[] {
  return layer.weights.filter((w) => TRAINABLE.has(shortName(w)));
}

function toLabels(labels: Tensor, n: number, numClasses: number): Tensor2D {
  if (labels.shape[0] !== n) throw new Error(`labels have ${labels.shape[0]} rows but the batch has ${n}`);
  return classTargets(labels, numClasses);
}

function lossAndCorrect(
  logits: Tensor2D,
  y: Tensor2D,
  labels: Tensor,
  numClasses: number,
  classWeights: readonly number[] | undefined,
): { loss: tf.Scalar; correct: tf.Scalar } {
  return {
    loss: weightedClassificationLoss(logits, y, labels, numClasses, classWeights),
    correct: correctPredictions(logits, y, numClasses),
  };
}

// ---------------------------------------------------------------------------------------------
// Fast route: fused units with hand-written gradients.

type Act = 'relu6' | 'linear';
type CustomGradFunc = Parameters<typeof tf.customGrad>[0];

function maskGrad(dy: Tensor, y: Tensor, act: Act): Tensor {
  return act === 'relu6' ? relu6GradFromOutput(dy, y) : dy;
}

// tf.fused.* runs matmul/convolution, bias add and activation as separate kernels whenever a
// gradient is being recorded (tfjs cannot differentiate the fused kernel with an activation).
// The units define their own gradients, so their forward pass calls the fused kernels directly.

function fusedMatMulKernel(a: Tensor2D, b: Tensor2D, bias: Tensor1D, act: Act): Tensor2D {
  const [m, k] = a.shape;
  const n = b.shape[1];
  const out = runKernel(
    '_FusedMatMul',
    { a: tf.reshape(a, [1, m, k]), b: tf.reshape(b, [1, k, n]), bias },
    {
      transposeA: false,
      transposeB: false,
      activation: act,
    },
  );
  return tf.reshape(out, [m, n]);
}

function fusedDepthwiseKernel(x: Tensor4D, k: Tensor4D, bias: Tensor1D, g: DwGeom, act: Act): Tensor4D {
  return runKernel<Tensor4D>(
    'FusedDepthwiseConv2D',
    { x, filter: k, bias },
    { strides: g.strides, pad: g.pad, dataFormat: 'NHWC', dilations: [1, 1], dimRoundingMode: undefined, activation: act },
  );
}

/** The three matrix products of a 1x1 convolution unit: act(x @ w + b), dz @ w^T and x^T @ dz. */
export interface PointwiseProducts {
  forward(x: Tensor2D, w: Tensor2D, bias: Tensor1D, act: Act): Tensor2D;
  inputGrad(dz: Tensor2D, w: Tensor2D): Tensor2D;
  filterGrad(x: Tensor2D, dz: Tensor2D): Tensor2D;
}

export const wasmProducts: PointwiseProducts = {
  forward: fusedMatMulKernel,
  // Explicit transposes: WASM's BatchMatMul with transpose flags is ~10x slower.
  inputGrad: (dz, w) => tf.matMul(dz, tf.transpose(w)),
  // XNNPACK packs a product's right-hand side on every call: pack the narrower of x and dz
  // (both orders give the same bits; each sum runs over the pixels in order).
  filterGrad: (x, dz) =>
    x.shape[1] >= dz.shape[1] ? tf.matMul(tf.transpose(x), dz) : (tf.transpose(tf.matMul(tf.transpose(dz), x)) as Tensor2D),
};

/** The same products as onnxruntime Gemm calls (transposes are Gemm's flags, the bias and ReLU6 in its graph). */
export const ortProducts: PointwiseProducts = {
  forward: (x, w, bias, act) => ortGemm(x, w, { bias, activation: act }),
  inputGrad: (dz, w) => ortGemm(dz, w, { transB: true }),
  filterGrad: (x, dz) => ortGemm(x, dz, { transA: true }),
};

/** act(x @ w + b) over the pixels of an NHWC tensor: a 1x1 convolution with folded BatchNorm. */
function pointwiseUnit(
  x: Tensor4D,
  w: Tensor2D,
  b: Tensor1D,
  act: Act,
  needDx: boolean,
  products: PointwiseProducts = wasmProducts,
): Tensor4D {
  const [n, h, wd, ci] = x.shape;
  const co = w.shape[1];
  const p = n * h * wd;
  const f = tf.customGrad(((...args: unknown[]) => {
    const [xi, wi, bi] = constantInput(args, x, needDx);
    const x2 = tf.reshape(xi, [p, ci]) as Tensor2D;
    const y = products.forward(x2, wi as Tensor2D, bi as Tensor1D, act);
    (args.at(-1) as GradSaveFunc)([x2, wi, y]);
    return {
      value: tf.reshape(y, [n, h, wd, co]),
      gradFunc: (dy: Tensor, saved: Tensor[]) => {
        const [xs, ws, ys] = saved as [Tensor2D, Tensor2D, Tensor2D];
        const dz = maskGrad(tf.reshape(dy, [p, co]), ys, act) as Tensor2D;
        const grads = [products.filterGrad(xs, dz), columnSumsOf(dz)];
        return needDx ? [tf.reshape(products.inputGrad(dz, ws), [n, h, wd, ci]), ...grads] : grads;
      },
    };
  }) as unknown as CustomGradFunc);
  return (needDx ? f(x, w, b) : f(w, b)) as Tensor4D;
}

/**
 * A unit's inputs from customGrad's arguments (the last is its save function). A constant input
 * (needDx false: the boundary activations) is not passed to customGrad at all, so tfjs asks no
 * gradient for it: before, a zero tensor of its size (14 MB at 224) was made every step.
 */
function constantInput(args: unknown[], x: Tensor, needDx: boolean): Tensor[] {
  const inputs = args.slice(0, -1) as Tensor[];
  return needDx ? inputs : [x, ...inputs];
}

interface DwGeom {
  strides: [number, number];
  pad: 'same' | 'valid';
}

/** act(depthwise(x, k) + b): a depthwise convolution with folded BatchNorm. */
function depthwiseUnit(x: Tensor4D, k: Tensor4D, b: Tensor1D, g: DwGeom, act: Act, needDx: boolean): Tensor4D {
  const f = tf.customGrad(((...args: unknown[]) => {
    const [xi, ki, bi] = constantInput(args, x, needDx);
    const y = fusedDepthwiseKernel(xi as Tensor4D, ki as Tensor4D, bi as Tensor1D, g, act);
    (args.at(-1) as GradSaveFunc)([xi, ki, y]);
    return {
      value: y,
      gradFunc: (dy: Tensor, saved: Tensor[]) => {
        const [xs, ks, ys] = saved as [Tensor4D, Tensor4D, Tensor4D];
        const dz = maskGrad(dy, ys, act) as Tensor4D;
        const attrs = { strides: g.strides, pad: g.pad, dilations: [1, 1], dimRoundingMode: undefined };
        const dk = runKernel('DepthwiseConv2dNativeBackpropFilter', { x: xs, dy: dz }, { ...attrs, filterShape: ks.shape });
        const c = dz.shape[3];
        const grads = [dk, columnSumsOf(tf.reshape(dz, [dz.size / c, c]) as Tensor2D)];
        if (!needDx) return grads;
        return [runKernel('DepthwiseConv2dNativeBackpropInput', { dy: dz, filter: ks }, { ...attrs, inputShape: xs.shape }), ...grads];
      },
    };
  }) as unknown as CustomGradFunc);
  return (needDx ? f(x, k, b) : f(k, b)) as Tensor4D;
}

/**
 * Global average pooling over H and W. Its gradient is tfjs' Mean gradient, (dy * 1) / (H W)
 * broadcast over x's shape, computed as (dy / (H W)) * 1: the same values. tfjs builds its ones
 * tensor in JS and uploads it every step (8 MB at 224); tf.fill writes it in the WASM heap.
 */
function meanPool(x: Tensor4D): Tensor2D {
  const [n, h, w, c] = x.shape;
  const f = tf.customGrad(((xi: Tensor) => ({
    value: tf.mean(xi, [1, 2]),
    gradFunc: (dy: Tensor) => tf.mul(tf.div(tf.reshape(dy, [n, 1, 1, c]), h * w), tf.fill([n, h, w, c], 1)),
  })) as unknown as CustomGradFunc);
  return f(x) as Tensor2D;
}

interface Owned {
  layerVar: LayerVariable;
  v: tf.Variable;
}

/** One fused unit or layer of the fast tail, over named values. */
interface Step {
  out: string;
  ins: string[];
  /** Holds trainable variables (its output is never a constant). */
  hasParams: boolean;
  /**
   * dropout: what the Dropout layer applies (undefined: inference, or a rate of 0); needDx: whether
   * the gradient with respect to the input is needed (input not constant).
   */
  run(xs: Tensor[], dropout: Dropout | undefined, needDx: boolean): Tensor;
}

/** The dropout of one forward pass: a fresh seeded draw, or the given mask (values 0 or 1/(1-rate)). */
type Dropout = (x: Tensor) => Tensor;

function layerConfig(layer: AnyLayer): LayerConfig {
  return layer.getConfig() as LayerConfig;
}

function padOf(pads: Pads): (x: Tensor) => Tensor {
  const [t, b, l, r] = pads;
  return (x) =>
    tf.pad(x, [
      [0, 0],
      [t, b],
      [l, r],
      [0, 0],
    ]);
}

function buildFastSteps(
  model: LayersModel,
  graph: TailGraph,
  own: (w: LayerVariable) => tf.Variable,
  constants: Tensor[],
  products: PointwiseProducts,
): Step[] {
  const layer = (name: string) => model.getLayer(name);
  const constant = (t: Tensor) => {
    constants.push(t);
    return t;
  };
  /** Folded BN: scale s = gamma / sqrt(var + eps), shift = beta - mean * s (gamma/beta trainable). */
  const bnParams = (bn: AnyLayer) => {
    const cfg = layerConfig(bn);
    const eps = cfg.epsilon as number;
    const mean = weightOf(bn, 'moving_mean');
    const variance = weightOf(bn, 'moving_variance');
    if (!mean || !variance) throw new Error(`BatchNormalization ${bn.name} has no moving statistics`);
    const invStd = constant(tf.tidy(() => tf.rsqrt(tf.add(variance.read(), eps))));
    const meanC = constant(tf.clone(mean.read()));
    const gammaW = weightOf(bn, 'gamma');
    const betaW = weightOf(bn, 'beta');
    const gamma = gammaW ? own(gammaW) : undefined;
    const beta = betaW ? own(betaW) : undefined;
    const axis = cfg.axis as number | number[];
    if (!(axis === -1 || axis === 3 || (Array.isArray(axis) && axis.length === 1 && (axis[0] === -1 || axis[0] === 3)))) {
      throw new Error(`BatchNormalization ${bn.name}: only channel-last BN is supported`);
    }
    return {
      scale: () => (gamma ? tf.mul(gamma, invStd) : invStd) as Tensor1D,
      shift: (s: Tensor1D, convBias?: Tensor1D) => {
        let sh = tf.neg(tf.mul(meanC, s));
        if (convBias) sh = tf.add(sh, tf.mul(convBias, s));
        return (beta ? tf.add(sh, beta) : sh) as Tensor1D;
      },
    };
  };

  const convStep = (op: ConvStructure): Step => {
    const unsupported = (what: string) => new Error(`${op.conv}: ${what} is not supported in the fast tail`);
    if (op.activation !== 'linear' && op.activation !== 'relu6') throw unsupported(`fused activation ${op.activation}`);
    if (op.dilations[0] !== 1 || op.dilations[1] !== 1) throw unsupported('a dilated convolution');
    if (!op.bn) throw unsupported('a convolution without BatchNormalization');
    const act: Act = op.activation;
    const convLayer = layer(op.conv);
    const p = bnParams(layer(op.bn));
    const biasW = layerConfig(convLayer).useBias ? weightOf(convLayer, 'bias') : undefined;
    const bias = biasW ? own(biasW) : undefined;
    const strides = op.strides;
    // ZeroPadding folded into the op: pad, then a valid convolution (what the Keras layers compute).
    const prePad = Array.isArray(op.pad) ? padOf(op.pad) : (x: Tensor) => x;
    const pad = Array.isArray(op.pad) ? 'valid' : op.pad;
    const base = { out: op.out, ins: op.inputs, hasParams: true };
    if (op.op === 'depthwiseConv2d') {
      const k = own(weightOf(convLayer, 'depthwise_kernel') as LayerVariable);
      const [, , c, m] = k.shape;
      return {
        ...base,
        run: ([x], _t, needDx) => {
          const s = p.scale();
          const ks = tf.mul(k, tf.reshape(s, [1, 1, c, m])) as Tensor4D;
          return depthwiseUnit(prePad(x) as Tensor4D, ks, p.shift(s, bias as Tensor1D | undefined), { strides, pad }, act, needDx);
        },
      };
    }
    const k = own(weightOf(convLayer, 'kernel') as LayerVariable);
    const [kh, kw, ci, co] = k.shape;
    const pointwise = kh === 1 && kw === 1 && strides[0] === 1 && strides[1] === 1 && !Array.isArray(op.pad);
    return {
      ...base,
      run: ([x], _t, needDx) => {
        const s = p.scale();
        const shift = p.shift(s, bias as Tensor1D | undefined);
        if (pointwise) return pointwiseUnit(x as Tensor4D, tf.mul(tf.reshape(k, [ci, co]), s) as Tensor2D, shift, act, needDx, products);
        const z = tf.add(tf.conv2d(prePad(x) as Tensor4D, tf.mul(k, s) as Tensor4D, strides, pad), shift);
        return act === 'relu6' ? tf.relu6(z) : z;
      },
    };
  };

  return graph.ops.map((op): Step => {
    const base = { out: op.out, ins: op.inputs, hasParams: false };
    const unsupported = () => new Error(`layer ${op.layers[0] ?? op.out} (${op.op}) is not supported in the fast tail`);
    switch (op.op) {
      case 'conv2d':
      case 'depthwiseConv2d':
        return convStep(op);
      case 'pad':
        return { ...base, run: ([x]) => padOf(op.pads)(x) };
      case 'layer': {
        if (op.className !== 'BatchNormalization') throw unsupported();
        const p = bnParams(layer(op.layers[0]));
        return {
          ...base,
          hasParams: true,
          run: ([x]) => {
            const s = p.scale();
            return tf.add(tf.mul(x, s), p.shift(s));
          },
        };
      }
      case 'activation':
        if (op.activation === 'relu') return { ...base, run: ([x]) => tf.relu(x) };
        if (op.activation === 'relu6') return { ...base, run: ([x]) => tf.clipByValue(tf.relu(x), 0, 6) };
        throw unsupported();
      case 'add':
        return { ...base, run: (xs) => tf.addN(xs) };
      case 'globalAveragePool':
        if (op.keepDims) throw unsupported();
        return { ...base, run: ([x]) => meanPool(x as Tensor4D) };
      case 'identity':
        if (layer(op.layers[0]).getClassName() !== 'Dropout') throw unsupported();
        return { ...base, run: ([x], dropout) => (dropout ? dropout(x) : x) };
      case 'dense': {
        if (op.activation !== 'linear') throw new Error(`${op.out}: Dense activation ${op.activation} is not supported in the tail`);
        const dense = layer(op.layers[0]);
        const k = own(weightOf(dense, 'kernel') as LayerVariable);
        const bW = weightOf(dense, 'bias');
        const b = bW ? own(bW) : undefined;
        return {
          ...base,
          hasParams: true,
          run: ([x]) => (b ? tf.add(tf.matMul(x as Tensor2D, k as Tensor2D), b) : tf.matMul(x as Tensor2D, k as Tensor2D)),
        };
      }
      default:
        throw unsupported();
    }
  });
}

// ---------------------------------------------------------------------------------------------

function defaultRoute(): TailRoute {
  return tf.getBackend() === 'tensorflow' ? 'layers' : 'fast';
}

/**
 * The trainable tail of a `buildClassifier` model above the freeze boundary (Keras base layer
 * `fineTuneAt - 1`), for phase 2 on cached boundary activations.
 */
export function createTail(model: LayersModel, opts: TailOptions): Tail {
  const fineTuneAt = opts.fineTuneAt ?? 120;
  // Keras base layer 0 is the base's input; in the classifier that tensor is `preprocess`'s output.
  const baseName = boundaryLayerName(fineTuneAt);
  const boundaryName = baseName === 'input_1' && !model.layers.some((l) => l.name === baseName) ? HEAD.preprocess : baseName;
  const { numClasses, classWeights } = opts;
  if (!Number.isInteger(numClasses) || numClasses < 2) throw new Error(`numClasses must be an integer >= 2; got ${numClasses}`);
  if (classWeights && classWeights.length !== numClasses)
    throw new Error(`classWeights: ${numClasses} weights expected; got ${classWeights.length}`);
  registerWasmGradKernels();
  const graph = tailGraph(model, boundaryName);
  const logitsLayer = model.getLayer(HEAD.logits);
  const units = logitsLayer.outputShape.at(-1) as number;
  if (units !== logitUnits(numClasses)) {
    throw new Error(`the model's logits layer has ${units} units, which does not fit ${numClasses} classes`);
  }
  const poolName = graph.layers.find((l) => l.getClassName() === 'GlobalAveragePooling2D')?.name;
  if (!poolName) throw new Error('no GlobalAveragePooling2D layer in the tail');
  const dropLayer = graph.layers.find((l) => l.getClassName() === 'Dropout');
  const dropoutRate = opts.dropout ?? (dropLayer ? (layerConfig(dropLayer).rate as number) : undefined) ?? 0.2;
  if (!(dropoutRate >= 0 && dropoutRate < 1)) throw new Error(`dropout must be in [0, 1); got ${dropoutRate}`);
  let dropoutCalls = opts.dropoutDrawsDone ?? 0;
  const nextSeed = () => (opts.seed === undefined ? undefined : opts.seed + dropoutCalls++);
  // The dropout of a training pass: the mask given, else the next draw of this tail's stream.
  const trainingDropout = (mask?: Tensor2D): Dropout | undefined =>
    dropoutRate === 0 ? undefined : mask ? (x) => tf.mul(x, mask) : (x) => tf.dropout(x, dropoutRate, undefined, nextSeed());
  const featureCount = model.getLayer(poolName).outputShape.at(-1) as number;
  const bShape = model.getLayer(boundaryName).outputShape as (number | null)[];
  const boundaryShape = bShape.slice(1) as [number, number, number];
  const route = opts.route ?? defaultRoute();
  const gemm = opts.gemm ?? 'wasm';
  if (gemm === 'ort' && (route !== 'fast' || tf.getBackend() !== 'wasm')) {
    throw new Error(`gemm 'ort' runs the fast tail's products on the wasm backend; this tail is '${route}' on ${tf.getBackend()}`);
  }
  const products = gemm === 'ort' ? ortProducts : wasmProducts;

  const checkBoundary = (b: Tensor4D) => {
    if (b.rank !== 4 || b.shape.slice(1).some((d, i) => d !== boundaryShape[i])) {
      throw new Error(`boundary activations must be [N, ${boundaryShape.join(', ')}] (output of ${boundaryName}); got [${b.shape}]`);
    }
  };

  let forward: (b: Tensor4D, dropout: Dropout | undefined, until?: string) => Tensor;
  let trainableVariables: tf.Variable[];
  let variableNames: string[];
  const keyOf = (w: LayerVariable) => {
    const layer = graph.layers.find((l) => l.weights.includes(w));
    return `${layer?.name}/${shortName(w)}`;
  };
  let writeBack = () => {};
  let disposeOwned = () => {};

  if (route === 'fast') {
    const owned: Owned[] = [];
    const constants: Tensor[] = [];
    const own = (w: LayerVariable) => {
      const found = owned.find((o) => o.layerVar === w);
      if (found) return found.v;
      const v = tf.variable(w.read(), true);
      owned.push({ layerVar: w, v });
      return v;
    };
    const steps = buildFastSteps(model, graph, own, constants, products);
    trainableVariables = owned.map((o) => o.v);
    variableNames = owned.map((o) => keyOf(o.layerVar));
    forward = (b, dropout, until) => {
      const values = new Map<string, Tensor>([[boundaryName, b]]);
      const constant = new Set([boundaryName]);
      for (const s of steps) {
        const xs = s.ins.map((n) => values.get(n) as Tensor);
        const needDx = s.ins.some((n) => !constant.has(n));
        values.set(s.out, s.run(xs, dropout, needDx));
        if (!needDx && !s.hasParams) constant.add(s.out);
        if (s.out === until) return values.get(s.out) as Tensor;
      }
      return values.get(graph.logitsName) as Tensor;
    };
    writeBack = () => {
      for (const o of owned) o.layerVar.write(o.v);
    };
    disposeOwned = () => {
      for (const o of owned) o.v.dispose();
      tf.dispose(constants);
    };
  } else {
    const layerVars = graph.layers.flatMap(trainableWeightsOf);
    trainableVariables = layerVars.map((w) => w.read() as tf.Variable);
    variableNames = layerVars.map(keyOf);
    forward = (b, dropout, until) => {
      const values = new Map<string, Tensor>([[boundaryName, b]]);
      // Each op's layers, chained: the first reads the op's inputs, each next one the previous output.
      for (const op of graph.ops) {
        let xs = op.inputs.map((n) => values.get(n) as Tensor);
        for (const name of op.layers) {
          const layer = model.getLayer(name);
          const y =
            layer.getClassName() === 'Dropout'
              ? dropout
                ? dropout(xs[0])
                : xs[0]
              : (layer.apply(xs.length === 1 ? xs[0] : xs, { training: false }) as Tensor);
          values.set(name, y);
          xs = [y];
        }
        values.set(op.out, xs[0]);
        if (op.out === until) return xs[0];
      }
      return values.get(graph.logitsName) as Tensor;
    };
  }

  let disposed = false;
  const live = () => {
    if (disposed) throw new Error('this tail was disposed');
  };
  return {
    route,
    gemm,
    boundaryName,
    boundaryShape,
    get trainableVariables() {
      return trainableVariables;
    },
    get variableNames() {
      return variableNames;
    },
    logits(boundary, training) {
      live();
      checkBoundary(boundary);
      return tf.tidy(() => forward(boundary, training ? trainingDropout() : undefined) as Tensor2D);
    },
    features(boundary) {
      live();
      checkBoundary(boundary);
      return tf.tidy(() => forward(boundary, undefined, poolName) as Tensor2D);
    },
    dropoutMask(n) {
      live();
      if (dropoutRate === 0) return undefined;
      // tf.dropout(x) multiplies x by this same draw, so ones * multiplier is the mask bit for bit.
      return tf.tidy(() => tf.dropout(tf.ones([n, featureCount]), dropoutRate, undefined, nextSeed()) as Tensor2D);
    },
    computeGradients(boundary, labels, training = true, dropoutMask) {
      live();
      checkBoundary(boundary);
      const n = boundary.shape[0];
      if (dropoutMask && (dropoutMask.rank !== 2 || dropoutMask.shape[0] !== n || dropoutMask.shape[1] !== featureCount)) {
        throw new Error(`dropoutMask must be [${n}, ${featureCount}]; got [${dropoutMask.shape}]`);
      }
      let correctT: tf.Scalar | undefined;
      // variableGrads silently drops variables flagged non-trainable (a frozen layer's): force them on.
      const flags = trainableVariables.map((v) => v.trainable);
      for (const v of trainableVariables) v.trainable = true;
      const dropout = training ? trainingDropout(dropoutMask) : undefined;
      let res: { value: tf.Scalar; grads: NamedTensorMap };
      try {
        res = tf.tidy(() => {
          const y = toLabels(labels, n, numClasses);
          return tf.variableGrads(() => {
            const r = lossAndCorrect(forward(boundary, dropout) as Tensor2D, y, labels, numClasses, classWeights);
            correctT = tf.keep(r.correct);
            return r.loss;
          }, trainableVariables);
        });
      } finally {
        trainableVariables.forEach((v, i) => {
          v.trainable = flags[i];
        });
      }
      const loss = res.value.dataSync()[0];
      const correct = (correctT as tf.Scalar).dataSync()[0];
      tf.dispose([res.value, correctT as tf.Scalar]);
      return { loss, correct, grads: trainableVariables.map((v) => res.grads[v.name]) };
    },
    applyGradients(grads, optimizer) {
      live();
      if (grads.length !== trainableVariables.length)
        throw new Error(`expected ${trainableVariables.length} gradients; got ${grads.length}`);
      optimizer.applyGradients(trainableVariables.map((v, i) => ({ name: v.name, tensor: grads[i] })));
    },
    trainStep(boundary, labels, optimizer) {
      const { loss, correct, grads } = this.computeGradients(boundary, labels, true);
      try {
        this.applyGradients(grads, optimizer);
      } finally {
        tf.dispose(grads);
      }
      return { loss, correct };
    },
    writeBack() {
      live();
      writeBack();
    },
    dispose() {
      if (disposed) return;
      disposed = true;
      disposeOwned();
    },
  };
}

/** The fused units, exported for their own gradient tests. */
export const fusedUnits = { pointwise: pointwiseUnit, depthwise: depthwiseUnit };
