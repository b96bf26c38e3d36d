// The fused inference graph of a flat functional tfjs LayersModel, as plain data: BatchNorm folded
// into the preceding convolution (float64, rounded once to float32), ZeroPadding folded into explicit
// conv pads, ReLU/ReLU6 fused into the conv. This is the one place that walks the Keras graph; the
// fused WASM executor (core/fast-forward.ts) and the exporters (core/export/) read the fused graph,
// the trainable tail (training/tail/) its structure (the same ops, without the folded values).
// Tensors are NHWC; kernels keep tfjs' layouts (Conv2D HWIO, DepthwiseConv2D [kh, kw, in, multiplier]).
import type { LayersModel, Tensor } from '@tensorflow/tfjs';
import { PREPROCESS } from '../head-names.js';

type Layer = LayersModel['layers'][number];

export type Act = 'linear' | 'relu' | 'relu6';
export type AnyAct = Act | 'sigmoid' | 'softmax' | 'tanh';
/** Explicit spatial padding: [top, bottom, left, right]. */
export type Pads = [number, number, number, number];

export interface OpBase {
  /** Name of the value this op produces: the Keras layer whose output it equals (or `<layer>/pre_activation`). */
  out: string;
  /** Names of the values it reads, in order. */
  inputs: string[];
  /** Keras layers folded into this op, in graph order. */
  layers: string[];
  /** Output shape without the batch dimension ([h, w, c] or [features]). */
  shape: number[];
}

export interface ConvOp extends OpBase {
  op: 'conv2d' | 'depthwiseConv2d';
  /** Identifies the folded weights (`conv` or `conv+bn`): equal ids, equal kernel and bias. */
  weightsId: string;
  kernel: Float32Array;
  /** conv2d: [kh, kw, inC, outC]; depthwiseConv2d: [kh, kw, inC, multiplier]. */
  kernelShape: [number, number, number, number];
  /** One per output channel (BatchNorm's shift folded in). */
  bias: Float32Array;
  strides: [number, number];
  dilations: [number, number];
  pad: 'same' | 'valid' | Pads;
  activation: Act;
}

export interface DenseOp extends OpBase {
  op: 'dense';
  kernel: Float32Array;
  /** [inFeatures, outFeatures]. */
  kernelShape: [number, number];
  bias?: Float32Array;
  activation: AnyAct;
}

export type FusedOp =
  | ConvOp
  | DenseOp
  | (OpBase & { op: 'add' })
  | (OpBase & { op: 'rescale'; scale: number; offset: number })
  | (OpBase & { op: 'pad'; pads: Pads })
  | (OpBase & { op: 'globalAveragePool'; keepDims: boolean })
  | (OpBase & { op: 'activation'; activation: AnyAct })
  /** Dropout, GaussianNoise & co: the identity in inference. */
  | (OpBase & { op: 'identity' })
  /** A layer this module does not translate: executors may run the Keras layer itself, exporters refuse it. */
  | (OpBase & { op: 'layer'; className: string });

/** An op's structure: what it computes from which layers, without folded values (the trainable tail binds its own). */
type StructureOf<T> = T extends ConvOp
  ? Omit<ConvOp, 'weightsId' | 'kernel' | 'kernelShape' | 'bias'> & { conv: string; bn?: string }
  : T extends DenseOp
    ? Omit<DenseOp, 'kernel' | 'kernelShape' | 'bias'>
    : T;
export type OpStructure = StructureOf<FusedOp>;
export type ConvStructure = StructureOf<ConvOp>;

export interface FusedGraph<Op extends OpBase = FusedOp> {
  /** Name of the graph's input value (the model's InputLayer, or `from` of a subgraph). */
  input: string;
  /** Input shape without the batch dimension: [h, w, c]. */
  inputShape: number[];
  /** Values the graph returns, in order. */
  outputs: string[];
  /** Topological order. */
  ops: Op[];
  /** Applied to the input before the ops (x * scale + offset); absent when the graph takes its input as is. */
  inputRescale?: { scale: number; offset: number };
}

/** The fused graph's ops without their values: see graphStructure. */
export type GraphStructure = FusedGraph<OpStructure>;

export interface FusedGraphOptions {
  /** Layer outputs that must stay observable (not swallowed by a fused op), e.g. a boundary and the pooled features. */
  keep?: readonly string[];
  /** Outputs of the graph; default the model's output. */
  outputs?: readonly string[];
  /**
   * How raw input is scaled. `auto` (default): the input is RGB 0..255; a model with its own
   * Rescaling layer applies it, a bare Keras base (which expects -1..1) gets x/127.5-1 as
   * `inputRescale`. `none`: the input is fed unchanged.
   */
  inputRescale?: 'auto' | 'none' | { scale: number; offset: number };
  /**
   * Weights already read, by `weightsId` (convs) or layer name (dense): consulted before the model's
   * weights are read and filled after. Lets a caller build several graphs of one model (other `keep`
   * sets) without folding twice, and after the layers model is disposed.
   */
  weightCache?: Map<string, OpWeights>;
}

export interface OpWeights {
  kernel: Float32Array;
  kernelShape: number[];
  bias?: Float32Array;
}

interface GraphNode {
  name: string;
  layer: Layer;
  className: string;
  inputs: string[];
}

const fail = (msg: string): never => {
  throw new Error(`fused-graph: ${msg}`);
};

/** Flat functional graph of the model, in topological order (model.layers order). */
function graphOf(model: LayersModel): GraphNode[] {
  const inModel = new Set(model.layers.map((l) => l.name));
  return model.layers.map((layer) => {
    const cls = layer.getClassName();
    if (cls === 'Functional' || cls === 'Model' || cls === 'Sequential') {
      fail(`nested model layer '${layer.name}' is not supported; build the graph flat`);
    }
    // Every layer of a flat functional model has one inbound node: the one in this model.
    const node = layer.inboundNodes[0];
    const inputs = node ? node.inboundLayers.map((l) => l.name).filter((n) => inModel.has(n)) : [];
    return { name: layer.name, layer, className: cls, inputs };
  });
}

/** The layer's weight values by short name (`kernel`, `gamma`...). They belong to the model: never dispose. */
function weightMap(layer: Layer): Map<string, Tensor> {
  const m = new Map<string, Tensor>();
  const values = layer.getWeights();
  layer.weights.forEach((w, i) => {
    const short = w.originalName.split('/').pop() ?? w.originalName;
    m.set(short, values[i]);
  });
  return m;
}

function reluActivation(layer: Layer): Act | null {
  const cfg = layer.getConfig() as { maxValue?: number | null; max_value?: number | null; negativeSlope?: number; threshold?: number };
  if ((cfg.negativeSlope ?? 0) !== 0 || (cfg.threshold ?? 0) !== 0) return null;
  const max = cfg.maxValue ?? cfg.max_value ?? null;
  if (max == null) return 'relu';
  return max === 6 ? 'relu6' : null;
}

/** The activation of a ReLU/Activation layer when it can be fused into a conv. */
function fusableActivation(layer: Layer): Act | null {
  const cls = layer.getClassName();
  if (cls === 'ReLU') return reluActivation(layer);
  if (cls === 'Activation') {
    const a = (layer.getConfig() as { activation?: string }).activation;
    if (a === 'relu' || a === 'relu6' || a === 'linear') return a;
  }
  return null;
}

const ACTIVATIONS = new Set<string>(['linear', 'relu', 'relu6', 'sigmoid', 'softmax', 'tanh']);
function anyActivation(a: string | undefined, layerName: string): AnyAct {
  const v = a ?? 'linear';
  if (!ACTIVATIONS.has(v)) fail(`activation '${v}' of ${layerName} is not supported`);
  return v as AnyAct;
}

function pair(v: unknown): [number, number] {
  return Array.isArray(v) ? [v[0] as number, (v[1] ?? v[0]) as number] : [v as number, v as number];
}

function zeroPadding(layer: Layer): Pads {
  const p = (layer.getConfig() as { padding: unknown }).padding;
  if (typeof p === 'number') return [p, p, p, p];
  const [a, b] = p as [unknown, unknown];
  return [...pair(a), ...pair(b)];
}

function shapeOf(layer: Layer): number[] {
  const s = layer.outputShape as (number | null)[];
  if (!Array.isArray(s) || Array.isArray(s[0])) fail(`layer '${layer.name}' has several outputs`);
  return s.slice(1).map((d) => d ?? -1);
}

interface ConvGroup {
  conv: GraphNode;
  bn?: GraphNode;
  act?: GraphNode;
  pad?: GraphNode;
}

/** Folds BN into conv weights in float64, rounded once to float32. */
function foldConv(group: ConvGroup): { kernel: Float32Array; bias: Float32Array; shape: [number, number, number, number] } {
  const convW = weightMap(group.conv.layer);
  const kernelName = group.conv.className === 'DepthwiseConv2D' ? 'depthwise_kernel' : 'kernel';
  const kernelT = convW.get(kernelName) ?? fail(`${group.conv.name} has no ${kernelName}`);
  const shape = kernelT.shape as [number, number, number, number];
  if (shape.length !== 4) fail(`${group.conv.name} kernel has shape [${shape}], expected rank 4`);
  const k = kernelT.dataSync() as Float32Array;
  // Output channel of a kernel element: last dim for Conv2D; (in * mult) for depthwise [kh,kw,in,mult].
  const outChannels = group.conv.className === 'DepthwiseConv2D' ? shape[2] * shape[3] : shape[3];
  const convBias = convW.get('bias')?.dataSync() as Float32Array | undefined;
  const scale = new Float64Array(outChannels).fill(1);
  const shift = new Float64Array(outChannels);
  if (convBias) for (let c = 0; c < outChannels; c++) shift[c] = convBias[c];
  if (group.bn) {
    const cfg = group.bn.layer.getConfig() as { epsilon: number; axis?: number | number[] };
    const axis = Array.isArray(cfg.axis) ? cfg.axis[0] : (cfg.axis ?? -1);
    if (axis !== -1 && axis !== 3) fail(`${group.bn.name} normalises axis ${axis}, expected the channel axis`);
    const w = weightMap(group.bn.layer);
    const gamma = w.get('gamma')?.dataSync();
    const beta = w.get('beta')?.dataSync();
    const mean = w.get('moving_mean')?.dataSync();
    const variance = w.get('moving_variance')?.dataSync();
    if (!mean || !variance) fail(`${group.bn.name} lacks moving statistics`);
    for (let c = 0; c < outChannels; c++) {
      const s = (gamma ? gamma[c] : 1) / Math.sqrt((variance as Float32Array)[c] + cfg.epsilon);
      shift[c] = (shift[c] - (mean as Float32Array)[c]) * s + (beta ? beta[c] : 0);
      scale[c] = s;
    }
  }
  const folded = new Float32Array(k.length);
  for (let i = 0; i < k.length; i++) folded[i] = k[i] * scale[i % outChannels];
  return { kernel: folded, bias: Float32Array.from(shift), shape };
}

function cached(cache: Map<string, OpWeights> | undefined, id: string, read: () => OpWeights): OpWeights {
  let w = cache?.get(id);
  if (!w) {
    w = read();
    cache?.set(id, w);
  }
  return w;
}

function convStructure(group: ConvGroup): ConvStructure {
  const cfg = group.conv.layer.getConfig() as {
    strides: number | number[];
    padding: 'same' | 'valid' | 'causal';
    dilationRate?: number | number[];
    dataFormat?: string;
  };
  if (cfg.dataFormat && cfg.dataFormat !== 'channelsLast')
    fail(`${group.conv.name} uses ${cfg.dataFormat}; only channelsLast is supported`);
  if (cfg.padding === 'causal') fail(`${group.conv.name} uses causal padding`);
  const last = group.act ?? group.bn ?? group.conv;
  return {
    op: group.conv.className === 'DepthwiseConv2D' ? 'depthwiseConv2d' : 'conv2d',
    out: last.name,
    inputs: (group.pad ?? group.conv).inputs,
    layers: [group.pad, group.conv, group.bn, group.act].filter((n): n is GraphNode => !!n).map((n) => n.name),
    shape: shapeOf(last.layer),
    conv: group.conv.name,
    ...(group.bn ? { bn: group.bn.name } : {}),
    strides: pair(cfg.strides),
    dilations: pair(cfg.dilationRate ?? 1),
    pad: group.pad ? zeroPadding(group.pad.layer) : cfg.padding === 'same' ? 'same' : 'valid',
    activation: group.act ? (fusableActivation(group.act.layer) as Act) : 'linear',
  };
}

function convOp(group: ConvGroup, cache?: Map<string, OpWeights>): ConvOp {
  const { conv: _conv, bn: _bn, ...structure } = convStructure(group);
  const weightsId = group.bn ? `${group.conv.name}+${group.bn.name}` : group.conv.name;
  const w = cached(cache, weightsId, () => {
    const f = foldConv(group);
    return { kernel: f.kernel, kernelShape: f.shape, bias: f.bias };
  });
  return { ...structure, weightsId, kernel: w.kernel, kernelShape: w.kernelShape as ConvOp['kernelShape'], bias: w.bias as Float32Array };
}

/** The op of a layer that is not part of a fused conv group. */
function simpleOp(node: GraphNode, cache?: Map<string, OpWeights>): FusedOp {
  const op = simpleStructure(node);
  if (op.op !== 'dense') return op;
  const w = cached(cache, node.name, () => {
    const m = weightMap(node.layer);
    const k = m.get('kernel') ?? fail(`${node.name} has no kernel`);
    const b = m.get('bias');
    return {
      kernel: (k.dataSync() as Float32Array).slice(),
      kernelShape: k.shape,
      ...(b ? { bias: (b.dataSync() as Float32Array).slice() } : {}),
    };
  });
  return { ...op, kernel: w.kernel, kernelShape: w.kernelShape as [number, number], ...(w.bias ? { bias: w.bias } : {}) };
}

function simpleStructure(node: GraphNode): Exclude<OpStructure, ConvStructure> {
  const base = { out: node.name, inputs: node.inputs, layers: [node.name], shape: shapeOf(node.layer) };
  const cfg = node.layer.getConfig() as Record<string, unknown>;
  switch (node.className) {
    case 'Rescaling':
      return { ...base, op: 'rescale', scale: cfg.scale as number, offset: cfg.offset as number };
    case 'ZeroPadding2D':
      return { ...base, op: 'pad', pads: zeroPadding(node.layer) };
    case 'Dropout':
    case 'SpatialDropout2D':
    case 'GaussianNoise':
    case 'GaussianDropout':
      return { ...base, op: 'identity' };
    case 'Add':
      return { ...base, op: 'add' };
    case 'GlobalAveragePooling2D':
      if (cfg.dataFormat && cfg.dataFormat !== 'channelsLast') break;
      return { ...base, op: 'globalAveragePool', keepDims: cfg.keepDims === true };
    case 'ReLU': {
      const a = reluActivation(node.layer);
      if (a) return { ...base, op: 'activation', activation: a };
      break;
    }
    case 'Activation':
      return { ...base, op: 'activation', activation: anyActivation(cfg.activation as string, node.name) };
    case 'Dense':
      return { ...base, op: 'dense', activation: anyActivation(cfg.activation as string, node.name) };
  }
  return { ...base, op: 'layer', className: node.className };
}

function resolveRescale(nodes: GraphNode[], opt: FusedGraphOptions['inputRescale']): FusedGraph['inputRescale'] {
  const o = opt ?? 'auto';
  if (typeof o === 'object') return { scale: o.scale, offset: o.offset };
  if (o === 'none' || nodes.some((n) => n.className === 'Rescaling')) return undefined;
  return { scale: PREPROCESS.scale, offset: PREPROCESS.offset };
}

type StructureOptions = Pick<FusedGraphOptions, 'keep' | 'outputs' | 'inputRescale'>;

/**
 * Walks the model once, grouping each conv with the ZeroPadding before it and the BatchNorm and
 * ReLU after it; `conv` and `simple` turn a group or a lone layer into an op.
 */
function walk<Op extends OpBase>(
  model: LayersModel,
  options: StructureOptions,
  emit: {
    conv(group: ConvGroup): Op & { activation: AnyAct };
    simple(node: GraphNode): Op;
    activation(op: OpBase & { op: 'activation'; activation: AnyAct }): Op;
  },
): FusedGraph<Op> {
  if (model.inputs.length !== 1 || model.outputs.length !== 1) fail('only single-input, single-output models are supported');
  const nodes = graphOf(model);
  const byName = new Map(nodes.map((n) => [n.name, n]));
  const inputNode = nodes.find((n) => n.className === 'InputLayer') ?? fail('the model has no InputLayer');
  const outputs = [...(options.outputs ?? [model.outputLayers[0].name])];
  const keep = new Set([...(options.keep ?? []), ...outputs]);
  for (const n of keep) if (!byName.has(n)) fail(`layer '${n}' is not in the model`);

  const consumers = new Map<string, string[]>();
  for (const n of nodes) for (const i of n.inputs) consumers.set(i, [...(consumers.get(i) ?? []), n.name]);
  const soleConsumer = (name: string): GraphNode | undefined => {
    const c = consumers.get(name);
    return c && c.length === 1 ? byName.get(c[0]) : undefined;
  };
  const isConv = (n: GraphNode) => n.className === 'Conv2D' || n.className === 'DepthwiseConv2D';
  const validPadding = (n: GraphNode) => (n.layer.getConfig() as { padding: string }).padding === 'valid';

  const ops: Op[] = [];
  const done = new Set<string>();
  for (const node of nodes) {
    if (done.has(node.name) || node.className === 'InputLayer') continue;
    // A ZeroPadding2D feeding only a valid conv is folded into that conv's explicit padding.
    if (node.className === 'ZeroPadding2D' && !keep.has(node.name)) {
      const next = soleConsumer(node.name);
      if (next && isConv(next) && validPadding(next)) continue;
    }
    if (isConv(node)) {
      const group: ConvGroup = { conv: node };
      const prev = node.inputs.length === 1 ? byName.get(node.inputs[0]) : undefined;
      if (prev?.className === 'ZeroPadding2D' && !keep.has(prev.name) && soleConsumer(prev.name) === node && validPadding(node)) {
        group.pad = prev;
      }
      const convActivation = (node.layer.getConfig() as { activation?: string }).activation ?? 'linear';
      if (convActivation === 'linear') {
        let tail: GraphNode = node;
        const bn = soleConsumer(node.name);
        if (bn?.className === 'BatchNormalization' && !keep.has(node.name)) {
          group.bn = bn;
          tail = bn;
        }
        const act = soleConsumer(tail.name);
        if (act && fusableActivation(act.layer) && !keep.has(tail.name)) group.act = act;
      }
      const op = emit.conv(group);
      if (convActivation === 'relu' || convActivation === 'relu6') op.activation = convActivation;
      else if (convActivation !== 'linear') {
        // A conv with its own non-ReLU activation: the conv, then the activation under the layer's name.
        const pre = `${node.name}/pre_activation`;
        ops.push({ ...op, out: pre });
        ops.push(
          emit.activation({
            op: 'activation',
            out: node.name,
            inputs: [pre],
            layers: [],
            shape: op.shape,
            activation: anyActivation(convActivation, node.name),
          }),
        );
        for (const l of op.layers) done.add(l);
        continue;
      }
      for (const l of op.layers) done.add(l);
      ops.push(op);
      continue;
    }
    ops.push(emit.simple(node));
    done.add(node.name);
  }
  const inputRescale = resolveRescale(nodes, options.inputRescale);
  return { input: inputNode.name, inputShape: shapeOf(inputNode.layer), outputs, ops, ...(inputRescale ? { inputRescale } : {}) };
}

/**
 * The fused graph of a flat functional LayersModel (the `buildClassifier` graph, or a bare MobileNetV2
 * base). Every op of the model is in `ops` (use `subgraph` to keep only what some outputs need).
 */
export function fusedGraph(model: LayersModel, options: FusedGraphOptions = {}): FusedGraph {
  return walk<FusedOp>(model, options, {
    conv: (g) => convOp(g, options.weightCache),
    simple: (n) => simpleOp(n, options.weightCache),
    activation: (op) => op,
  });
}

/**
 * The same ops as fusedGraph, without reading or folding any weight: which layers each op fuses (a
 * conv's `conv` and `bn` layer), its geometry and activation. The trainable tail builds on this.
 */
export function graphStructure(model: LayersModel, options: StructureOptions = {}): GraphStructure {
  return walk<OpStructure>(model, options, { conv: convStructure, simple: simpleStructure, activation: (op) => op });
}

/**
 * The part of `graph` that computes `outputs` from `from` (default: the graph input), e.g. the frozen
 * part of a classifier (outputs at the freeze boundary and at the pooled features). `from` and the
 * outputs must be values of the graph (pass them as `keep` to fusedGraph). The input rescale applies
 * only when starting at the graph's own input.
 */
export function subgraph<Op extends OpBase>(graph: FusedGraph<Op>, opts: { from?: string; outputs: readonly string[] }): FusedGraph<Op> {
  const from = opts.from ?? graph.input;
  const producing = new Map(graph.ops.map((o) => [o.out, o]));
  if (from !== graph.input && !producing.has(from)) fail(`'${from}' is not a value of the graph (fused away? pass it in keep)`);
  const needed = new Set<Op>();
  const seen = new Set<string>();
  const stack = [...opts.outputs];
  while (stack.length) {
    const name = stack.pop() as string;
    if (seen.has(name) || name === from) continue;
    seen.add(name);
    const op = producing.get(name);
    if (!op) {
      fail(
        name === graph.input
          ? `'${opts.outputs.join(', ')}' depends on the model input, not only on '${from}'`
          : `no op produces '${name}' (fused away? pass it in keep)`,
      );
    }
    needed.add(op as Op);
    stack.push(...(op as Op).inputs);
  }
  const inputShape = from === graph.input ? graph.inputShape : (producing.get(from) as Op).shape;
  return {
    input: from,
    inputShape: [...inputShape],
    outputs: [...opts.outputs],
    ops: graph.ops.filter((o) => needed.has(o)),
    ...(from === graph.input && graph.inputRescale ? { inputRescale: { ...graph.inputRescale } } : {}),
  };
}

/** The op producing `name`, or undefined for the graph input. */
export function producerOf<Op extends OpBase>(graph: FusedGraph<Op>, name: string): Op | undefined {
  return graph.ops.find((o) => o.out === name);
}
