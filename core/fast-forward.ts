// Inference executor for MobileNetV2-style layers models: BatchNorm folded into the preceding
// convolution, ZeroPadding folded into explicit conv padding, ReLU6 fused into the conv kernel.
// On the WASM backend this runs one XNNPACK call per conv instead of conv + batchNorm + clip.
import type { LayersModel, Tensor, Tensor4D } from '@tensorflow/tfjs';
import { PREPROCESS } from './classifier.js';
import { tf } from './tf.js';

type Layer = LayersModel['layers'][number];
type Activation = 'linear' | 'relu' | 'relu6';
type ExplicitPad = [[number, number], [number, number], [number, number], [number, number]];

interface GraphNode {
  name: string;
  layer: Layer;
  className: string;
  inputs: string[];
}

interface Step {
  /** Name of the layer whose output this step produces. */
  out: string;
  inputs: string[];
  /** Layer names folded into this step (for describe()). */
  layers: string[];
  run(inputs: Tensor[]): Tensor;
}

export interface ForwardOptions {
  /** Start from this layer's output (x is that activation). Default: the model input. */
  from?: string;
  /** Return this layer's output. Default: the model output. */
  to?: string;
}

export interface FastForwardOptions {
  /**
   * How raw input is scaled when a forward starts at the model input. `auto` (default): the input
   * is RGB 0..255 — a model with its own Rescaling layer applies it, a bare Keras base (which expects
   * -1..1) gets x/127.5-1 applied here. `none` feeds the model input unchanged.
   */
  inputRescale?: 'auto' | 'none' | { scale: number; offset: number };
}

export interface FastForward {
  /** Runs the fused graph. `x` is [N,H,W,C] (or [H,W,C]); the caller keeps ownership of `x`. */
  forward(x: Tensor, opts?: ForwardOptions): Tensor;
  /** Layer names in execution order that can be used as `from`/`to`. */
  readonly layerNames: string[];
  readonly inputName: string;
  readonly outputName: string;
  /** Human-readable plan: one line per step, with the layers folded into it. */
  describe(opts?: ForwardOptions): string[];
  /** Frees the folded weight tensors. */
  dispose(): void;
}

function layerClass(layer: Layer): string {
  return layer.getClassName();
}

/** Flat functional graph of the model, in topological order (model.layers order). */
function graphOf(model: LayersModel): GraphNode[] {
  const inModel = new Set(model.layers.map((l) => l.name));
  return model.layers.map((layer) => {
    const cls = layerClass(layer);
    if (cls === 'Functional' || cls === 'Model' || cls === 'Sequential') {
      throw new Error(`fast-forward: nested model layer '${layer.name}' is not supported; build the graph flat`);
    }
    // Every layer of a flat functional model has one inbound node: the one in this model.
    const node = layer.inboundNodes[0];
    const inputs = node ? node.inboundLayers.map((l) => l.name).filter((n) => inModel.has(n)) : [];
    return { name: layer.name, layer, className: cls, inputs };
  });
}

/** The layer's weight variables by short name (`kernel`, `gamma`...). They belong to the model: never dispose. */
function weightMap(layer: Layer): Map<string, Tensor> {
  const m = new Map<string, Tensor>();
  const values = layer.getWeights();
  layer.weights.forEach((w, i) => {
    const short = w.originalName.split('/').pop() ?? w.originalName;
    m.set(short, values[i]);
  });
  return m;
}

function reluActivation(layer: Layer): Activation | null {
  const cfg = layer.getConfig() as { maxValue?: number | null; max_value?: number | null; negativeSlope?: number; threshold?: number };
  if ((cfg.negativeSlope ?? 0) !== 0 || (cfg.threshold ?? 0) !== 0) return null;
  const max = cfg.maxValue ?? cfg.max_value ?? null;
  if (max == null) return 'relu';
  return max === 6 ? 'relu6' : null;
}

function activationLayerKind(layer: Layer): Activation | null {
  const cls = layerClass(layer);
  if (cls === 'ReLU') return reluActivation(layer);
  if (cls === 'Activation') {
    const a = (layer.getConfig() as { activation?: string }).activation;
    if (a === 'relu' || a === 'relu6' || a === 'linear') return a;
  }
  return null;
}

function pair(v: unknown): [number, number] {
  return Array.isArray(v) ? [v[0] as number, (v[1] ?? v[0]) as number] : [v as number, v as number];
}

function zeroPadding(layer: Layer): [[number, number], [number, number]] {
  const p = (layer.getConfig() as { padding: unknown }).padding;
  if (typeof p === 'number')
    return [
      [p, p],
      [p, p],
    ];
  const [a, b] = p as [unknown, unknown];
  return [pair(a), pair(b)];
}

interface ConvGroup {
  conv: GraphNode;
  bn?: GraphNode;
  act?: GraphNode;
  pad?: GraphNode;
}

/** Folds BN into conv weights in float64, rounded once to float32. Returns [kernel, bias]. */
function foldConv(group: ConvGroup): { kernel: Tensor; bias: Tensor } {
  const convW = weightMap(group.conv.layer);
  const kernelName = group.conv.className === 'DepthwiseConv2D' ? 'depthwise_kernel' : 'kernel';
  const kernelT = convW.get(kernelName);
  if (!kernelT) throw new Error(`fast-forward: ${group.conv.name} has no ${kernelName}`);
  const shape = kernelT.shape as [number, number, number, number];
  if (shape.length !== 4) throw new Error(`fast-forward: ${group.conv.name} kernel has shape [${shape}], expected rank 4`);
  const k = kernelT.dataSync() as Float32Array;
  // Output channel of a kernel element: last dim for Conv2D; (in * mult) for depthwise [kh,kw,in,mult].
  const outChannels = group.conv.className === 'DepthwiseConv2D' ? shape[2] * shape[3] : shape[3];
  const convBias = convW.get('bias')?.dataSync() as Float32Array | undefined;
  const scale = new Float64Array(outChannels).fill(1);
  const shift = new Float64Array(outChannels);
  if (convBias) for (let c = 0; c < outChannels; c++) shift[c] = convBias[c];
  if (group.bn) {
    const cfg = group.bn.layer.getConfig() as { epsilon: number; center?: boolean; scale?: boolean; axis?: number | number[] };
    const axis = Array.isArray(cfg.axis) ? cfg.axis[0] : (cfg.axis ?? -1);
    if (axis !== -1 && axis !== 3) throw new Error(`fast-forward: ${group.bn.name} normalises axis ${axis}, expected the channel axis`);
    const w = weightMap(group.bn.layer);
    const gamma = w.get('gamma')?.dataSync();
    const beta = w.get('beta')?.dataSync();
    const mean = w.get('moving_mean')?.dataSync();
    const variance = w.get('moving_variance')?.dataSync();
    if (!mean || !variance) throw new Error(`fast-forward: ${group.bn.name} lacks moving statistics`);
    for (let c = 0; c < outChannels; c++) {
      const s = (gamma ? gamma[c] : 1) / Math.sqrt(variance[c] + cfg.epsilon);
      shift[c] = (shift[c] - mean[c]) * s + (beta ? beta[c] : 0);
      scale[c] = s;
    }
  }
  const folded = new Float32Array(k.length);
  for (let i = 0; i < k.length; i++) folded[i] = k[i] * scale[i % outChannels];
  return { kernel: tf.tensor(folded, shape), bias: tf.tensor1d(Float32Array.from(shift)) };
}

function convStep(group: ConvGroup, weights: { kernel: Tensor; bias: Tensor }): Step {
  const cfg = group.conv.layer.getConfig() as {
    strides: number | number[];
    padding: 'same' | 'valid' | 'causal';
    dilationRate?: number | number[];
    dataFormat?: string;
  };
  if (cfg.dataFormat && cfg.dataFormat !== 'channelsLast') {
    throw new Error(`fast-forward: ${group.conv.name} uses ${cfg.dataFormat}; only channelsLast is supported`);
  }
  const strides = pair(cfg.strides);
  const dilations = pair(cfg.dilationRate ?? 1);
  let pad: 'same' | 'valid' | ExplicitPad = cfg.padding === 'same' ? 'same' : 'valid';
  if (group.pad) {
    const [[t, b], [l, r]] = zeroPadding(group.pad.layer);
    pad = [
      [0, 0],
      [t, b],
      [l, r],
      [0, 0],
    ];
  }
  const activation: Activation = group.act ? (activationLayerKind(group.act.layer) as Activation) : 'linear';
  const depthwise = group.conv.className === 'DepthwiseConv2D';
  const layers = [group.pad, group.conv, group.bn, group.act].filter((n): n is GraphNode => !!n).map((n) => n.name);
  const last = group.act ?? group.bn ?? group.conv;
  return {
    out: last.name,
    inputs: (group.pad ?? group.conv).inputs,
    layers,
    run: ([x]) => {
      const args = {
        x: x as Tensor4D,
        filter: weights.kernel as Tensor4D,
        strides,
        pad: pad as 'valid',
        dilations,
        bias: weights.bias,
        activation,
      };
      return depthwise ? tf.fused.depthwiseConv2d(args) : tf.fused.conv2d(args);
    },
  };
}

function applyActivation(x: Tensor, a: string | undefined, layerName: string): Tensor {
  switch (a ?? 'linear') {
    case 'linear':
      return x;
    case 'relu':
      return tf.relu(x);
    case 'relu6':
      return tf.relu6(x);
    case 'sigmoid':
      return tf.sigmoid(x);
    case 'softmax':
      return tf.softmax(x);
    case 'tanh':
      return tf.tanh(x);
    default:
      throw new Error(`fast-forward: activation '${a}' of ${layerName} is not supported`);
  }
}

/** Step for a layer that is not part of a fused conv group. */
function simpleStep(node: GraphNode, owned: Tensor[]): Step {
  const base = { out: node.name, inputs: node.inputs, layers: [node.name] };
  const cfg = node.layer.getConfig() as Record<string, unknown>;
  switch (node.className) {
    case 'Rescaling': {
      const scale = cfg.scale as number;
      const offset = cfg.offset as number;
      return { ...base, run: ([x]) => tf.add(tf.mul(x, scale), offset) };
    }
    case 'ZeroPadding2D': {
      const [[t, b], [l, r]] = zeroPadding(node.layer);
      return {
        ...base,
        run: ([x]) =>
          tf.pad(x, [
            [0, 0],
            [t, b],
            [l, r],
            [0, 0],
          ]),
      };
    }
    case 'Dropout':
    case 'SpatialDropout2D':
    case 'GaussianNoise':
    case 'GaussianDropout':
      return { ...base, run: ([x]) => tf.clone(x) };
    case 'Add':
      return { ...base, run: (xs) => (xs.length === 2 ? tf.add(xs[0], xs[1]) : tf.addN(xs)) };
    case 'GlobalAveragePooling2D':
      return { ...base, run: ([x]) => tf.mean(x, [1, 2], cfg.keepDims === true) };
    case 'ReLU': {
      const a = reluActivation(node.layer);
      if (a) return { ...base, run: ([x]) => applyActivation(x, a, node.name) };
      break;
    }
    case 'Activation':
      return { ...base, run: ([x]) => applyActivation(x, cfg.activation as string, node.name) };
    case 'Dense': {
      const w = weightMap(node.layer);
      const kernel = tf.clone(w.get('kernel') as Tensor);
      const b = w.get('bias');
      const bias = b ? tf.clone(b) : undefined;
      owned.push(kernel, ...(bias ? [bias] : []));
      const act = cfg.activation as string;
      const fusable = act === 'linear' || act === 'relu' || act === 'relu6' || act === 'sigmoid';
      return {
        ...base,
        run: ([x]) => {
          if (x.rank !== 2) throw new Error(`fast-forward: ${node.name} expects rank-2 input, got ${x.shape}`);
          const y = tf.fused.matMul({
            a: x as tf.Tensor2D,
            b: kernel as tf.Tensor2D,
            bias,
            activation: fusable ? (act as 'linear') : 'linear',
          });
          return fusable ? y : applyActivation(y, act, node.name);
        },
      };
    }
  }
  // Anything else: the layer's own eager call, in inference mode.
  return { ...base, run: (xs) => node.layer.apply(xs.length === 1 ? xs[0] : xs, { training: false }) as Tensor };
}

/**
 * Builds the fused executor for a flat functional LayersModel (the `buildClassifier` graph, or a bare
 * MobileNetV2 base). Folding happens once per conv group; the fused weights are held until dispose().
 */
export function createFastForward(model: LayersModel, options: FastForwardOptions = {}): FastForward {
  const nodes = graphOf(model);
  const byName = new Map(nodes.map((n) => [n.name, n]));
  if (model.inputs.length !== 1 || model.outputs.length !== 1) {
    throw new Error('fast-forward: only single-input, single-output models are supported');
  }
  const inputNode = nodes.find((n) => n.className === 'InputLayer');
  if (!inputNode) throw new Error('fast-forward: the model has no InputLayer');
  const outputName = model.outputLayers[0].name;
  const consumers = new Map<string, string[]>();
  for (const n of nodes) for (const i of n.inputs) consumers.set(i, [...(consumers.get(i) ?? []), n.name]);
  const soleConsumer = (name: string): GraphNode | undefined => {
    const c = consumers.get(name);
    return c && c.length === 1 ? byName.get(c[0]) : undefined;
  };

  let rescale: { scale: number; offset: number } | null = null;
  const opt = options.inputRescale ?? 'auto';
  if (typeof opt === 'object') rescale = opt;
  else if (opt === 'auto') {
    const hasRescaling = nodes.some((n) => n.className === 'Rescaling');
    if (!hasRescaling) rescale = { scale: PREPROCESS.scale, offset: PREPROCESS.offset };
  }

  const owned: Tensor[] = [];
  const folded = new Map<string, { kernel: Tensor; bias: Tensor }>();
  const plans = new Map<string, Step[]>();

  /** Fusion with the given layer outputs kept observable (they may not be swallowed by a group). */
  function compile(keep: Set<string>): Step[] {
    const steps: Step[] = [];
    const done = new Set<string>();
    const isConv = (n: GraphNode) => n.className === 'Conv2D' || n.className === 'DepthwiseConv2D';
    for (const node of nodes) {
      if (done.has(node.name) || node.className === 'InputLayer') continue;
      // A ZeroPadding2D feeding only a valid conv is folded into that conv's explicit padding.
      if (node.className === 'ZeroPadding2D' && !keep.has(node.name)) {
        const next = soleConsumer(node.name);
        if (next && isConv(next) && (next.layer.getConfig() as { padding: string }).padding === 'valid') continue;
      }
      if (isConv(node)) {
        const group: ConvGroup = { conv: node };
        const prev = node.inputs.length === 1 ? byName.get(node.inputs[0]) : undefined;
        if (
          prev?.className === 'ZeroPadding2D' &&
          !keep.has(prev.name) &&
          soleConsumer(prev.name) === node &&
          (node.layer.getConfig() as { padding: string }).padding === 'valid'
        ) {
          group.pad = prev;
        }
        const convActivation = (node.layer.getConfig() as { activation?: string }).activation ?? 'linear';
        let tail: GraphNode = node;
        if (convActivation === 'linear') {
          const bn = soleConsumer(node.name);
          if (bn?.className === 'BatchNormalization' && !keep.has(node.name)) {
            group.bn = bn;
            tail = bn;
          }
          const act = soleConsumer(tail.name);
          if (act && activationLayerKind(act.layer) && !keep.has(tail.name)) group.act = act;
        }
        const key = `${node.name}|${group.bn?.name ?? ''}`;
        let w = folded.get(key);
        if (!w) {
          w = foldConv(group);
          folded.set(key, w);
        }
        const step = convStep(group, w);
        if (convActivation !== 'linear') {
          const inner = step.run;
          step.run = (xs) => applyActivation(inner(xs), convActivation, node.name);
        }
        for (const l of step.layers) done.add(l);
        steps.push(step);
        continue;
      }
      steps.push(simpleStep(node, owned));
      done.add(node.name);
    }
    return steps;
  }

  function plan(from: string, to: string): Step[] {
    const key = `${from}>${to}`;
    let p = plans.get(key);
    if (p) return p;
    const all = compile(new Set([from, to]));
    const producing = new Map(all.map((s) => [s.out, s]));
    // Walk back from `to`, collecting the steps it needs, stopping at `from`.
    const needed = new Set<Step>();
    const stack = [to];
    const seen = new Set<string>();
    while (stack.length) {
      const name = stack.pop() as string;
      if (seen.has(name) || name === from) continue;
      seen.add(name);
      const step = producing.get(name);
      if (!step) {
        throw new Error(
          name === inputNode?.name
            ? `fast-forward: '${to}' depends on the model input, not only on '${from}'`
            : `fast-forward: no step produces '${name}'`,
        );
      }
      needed.add(step);
      stack.push(...step.inputs);
    }
    p = all.filter((s) => needed.has(s));
    plans.set(key, p);
    return p;
  }

  // Fold every conv group up front, so forwards allocate nothing that outlives them.
  plan(inputNode.name, outputName);

  const checkName = (n: string, what: string) => {
    if (!byName.has(n)) throw new Error(`fast-forward: ${what} layer '${n}' is not in the model`);
  };

  return {
    layerNames: nodes.map((n) => n.name),
    inputName: inputNode.name,
    outputName,
    describe(opts = {}) {
      const from = opts.from ?? inputNode.name;
      const to = opts.to ?? outputName;
      return plan(from, to).map((s) =>
        `${s.out} <- [${s.inputs.join(', ')}] ${s.layers.length > 1 ? `(fused: ${s.layers.join(' + ')})` : ''}`.trim(),
      );
    },
    forward(x, opts = {}) {
      const from = opts.from ?? inputNode.name;
      const to = opts.to ?? outputName;
      checkName(from, 'from');
      checkName(to, 'to');
      const steps = plan(from, to);
      return tf.tidy(() => {
        let input = x.rank === 3 ? tf.expandDims(x, 0) : x;
        if (input.rank !== 4) throw new Error(`fast-forward: expected [N,H,W,C] input, got shape [${x.shape}]`);
        if (input.dtype !== 'float32') input = tf.cast(input, 'float32');
        if (from === inputNode.name && rescale) input = tf.add(tf.mul(input, rescale.scale), rescale.offset);
        if (steps.length === 0) return input === x ? tf.clone(x) : input;
        // Reference counts so intermediates are freed as soon as their last consumer ran.
        const uses = new Map<string, number>();
        for (const s of steps) for (const i of s.inputs) uses.set(i, (uses.get(i) ?? 0) + 1);
        const values = new Map<string, Tensor>([[from, input]]);
        let out: Tensor | undefined;
        for (const s of steps) {
          const ins = s.inputs.map((i) => {
            const v = values.get(i);
            if (!v) throw new Error(`fast-forward: '${s.out}' needs '${i}', which is not computed from '${from}'`);
            return v;
          });
          const y = s.run(ins);
          values.set(s.out, y);
          for (const i of s.inputs) {
            const left = (uses.get(i) ?? 0) - 1;
            uses.set(i, left);
            if (left === 0 && i !== to) {
              const v = values.get(i);
              if (v && v !== x) v.dispose();
              values.delete(i);
            }
          }
          if (s.out === to) out = y;
        }
        if (!out) throw new Error(`fast-forward: '${to}' was not produced`);
        return out;
      });
    },
    dispose() {
      for (const w of folded.values()) tf.dispose([w.kernel, w.bias]);
      folded.clear();
      tf.dispose(owned);
      owned.length = 0;
      plans.clear();
    },
  };
}
