// Inference executor for MobileNetV2-style layers models over the fused graph (core/graph/fused-graph.ts):
// BatchNorm folded into the preceding convolution, ZeroPadding folded into explicit conv padding,
// ReLU6 fused into the conv kernel. On the WASM backend this runs one XNNPACK call per conv instead
// of conv + batchNorm + clip.
import type { LayersModel, Tensor, Tensor4D } from '@tensorflow/tfjs';
import {
  type AnyAct,
  type FusedGraph,
  type FusedGraphOptions,
  type FusedOp,
  fusedGraph,
  type OpWeights,
  subgraph,
} from './graph/fused-graph.js';
import { tf } from './tf.js';

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
  inputRescale?: FusedGraphOptions['inputRescale'];
}

export interface FastForward {
  /** Runs the fused graph. `x` is [N,H,W,C] (or [H,W,C]); the caller keeps ownership of `x`. */
  forward(x: Tensor, opts?: ForwardOptions): Tensor;
  /** One pass, several outputs (e.g. the pooled embedding and the logits beside the probabilities), in `to` order. */
  forwardMany(x: Tensor, opts: { from?: string; to: readonly string[] }): Tensor[];
  /** Layer names in execution order that can be used as `from`/`to`. */
  readonly layerNames: string[];
  readonly inputName: string;
  readonly outputName: string;
  /** Human-readable plan: one line per step, with the layers folded into it. */
  describe(opts?: ForwardOptions): string[];
  /** Frees the folded weight tensors. */
  dispose(): void;
}

/** One activation, as the fused executor applies it (also used by int8 calibration). */
export function applyActivation(x: Tensor, a: AnyAct, layerName: string): Tensor {
  switch (a) {
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

type Run = (inputs: Tensor[]) => Tensor;
const EMPTY = new Float32Array(0);

/**
 * Builds the fused executor for a flat functional LayersModel (the `buildClassifier` graph, or a bare
 * MobileNetV2 base). Folding happens once per conv group; the fused weights are held until dispose().
 */
export function createFastForward(model: LayersModel, options: FastForwardOptions = {}): FastForward {
  const inputRescale = options.inputRescale ?? 'auto';
  // Plans for other from/to pairs are built later, possibly after the caller disposed the model: they
  // find the weights of the ops already folded here (as empty arrays: the tensors below hold them).
  const weightCache = new Map<string, OpWeights>();
  const full = fusedGraph(model, { inputRescale, weightCache });
  const inputName = full.input;
  const outputName = full.outputs[0];
  const layerNames = model.layers.map((l) => l.name);
  const known = new Set(layerNames);

  // Weight tensors by weightsId / layer name, shared by every plan.
  const weights = new Map<string, Tensor[]>();
  const held = (id: string, make: () => Tensor[]): Tensor[] => {
    let w = weights.get(id);
    if (!w) {
      w = make();
      weights.set(id, w);
    }
    return w;
  };

  function runner(op: FusedOp): Run {
    switch (op.op) {
      case 'conv2d':
      case 'depthwiseConv2d': {
        const [kernel, bias] = held(op.weightsId, () => [tf.tensor(op.kernel, op.kernelShape), tf.tensor1d(op.bias)]);
        const pad =
          typeof op.pad === 'string'
            ? op.pad
            : ([
                [0, 0],
                [op.pad[0], op.pad[1]],
                [op.pad[2], op.pad[3]],
                [0, 0],
              ] as const);
        const depthwise = op.op === 'depthwiseConv2d';
        return ([x]) => {
          const args = {
            x: x as Tensor4D,
            filter: kernel as Tensor4D,
            strides: op.strides,
            pad: pad as 'valid',
            dilations: op.dilations,
            bias,
            activation: op.activation,
          };
          return depthwise ? tf.fused.depthwiseConv2d(args) : tf.fused.conv2d(args);
        };
      }
      case 'rescale':
        return ([x]) => tf.add(tf.mul(x, op.scale), op.offset);
      case 'pad': {
        const [t, b, l, r] = op.pads;
        return ([x]) =>
          tf.pad(x, [
            [0, 0],
            [t, b],
            [l, r],
            [0, 0],
          ]);
      }
      case 'identity':
        return ([x]) => tf.clone(x);
      case 'add':
        return (xs) => (xs.length === 2 ? tf.add(xs[0], xs[1]) : tf.addN(xs));
      case 'globalAveragePool':
        return ([x]) => tf.mean(x, [1, 2], op.keepDims);
      case 'activation':
        return ([x]) => applyActivation(x, op.activation, op.out);
      case 'dense': {
        const [kernel, bias] = held(op.out, () => [tf.tensor(op.kernel, op.kernelShape), ...(op.bias ? [tf.tensor1d(op.bias)] : [])]);
        const act = op.activation;
        const fusable = act === 'linear' || act === 'relu' || act === 'relu6' || act === 'sigmoid';
        return ([x]) => {
          if (x.rank !== 2) throw new Error(`fast-forward: ${op.out} expects rank-2 input, got ${x.shape}`);
          const y = tf.fused.matMul({
            a: x as tf.Tensor2D,
            b: kernel as tf.Tensor2D,
            bias,
            activation: fusable ? (act as 'linear') : 'linear',
          });
          return fusable ? y : applyActivation(y, act, op.out);
        };
      }
      case 'layer': {
        // Anything else: the layer's own eager call, in inference mode.
        const layer = model.getLayer(op.out);
        return (xs) => layer.apply(xs.length === 1 ? xs[0] : xs, { training: false }) as Tensor;
      }
    }
  }

  interface Plan {
    graph: FusedGraph;
    runs: Run[];
  }
  const plans = new Map<string, Plan>();
  function plan(from: string, to: string | readonly string[]): Plan {
    const outs = typeof to === 'string' ? [to] : [...to];
    const key = `${from}>${outs.join(',')}`;
    let p = plans.get(key);
    if (p) return p;
    const graph =
      from === inputName && outs.length === 1 && outs[0] === outputName
        ? full
        : fusedGraph(model, { keep: [from, ...outs], inputRescale, weightCache });
    const sub = subgraph(graph, { from, outputs: outs });
    p = { graph: sub, runs: sub.ops.map(runner) };
    for (const [id, w] of weightCache) {
      if (!weights.has(id)) continue;
      w.kernel = EMPTY;
      if (w.bias) w.bias = EMPTY;
    }
    plans.set(key, p);
    return p;
  }

  // Fold every conv group up front, so forwards allocate nothing that outlives them.
  plan(inputName, outputName);

  const checkName = (n: string, what: string) => {
    if (!known.has(n)) throw new Error(`fast-forward: ${what} layer '${n}' is not in the model`);
  };

  function run(x: Tensor, from: string, tos: readonly string[]): Tensor[] {
    checkName(from, 'from');
    for (const to of tos) checkName(to, 'to');
    const { graph, runs } = plan(from, tos);
    const steps = graph.ops;
    const wanted = new Set(tos);
    return tf.tidy(() => {
      let input = x.rank === 3 ? tf.expandDims(x, 0) : x;
      if (input.rank !== 4) throw new Error(`fast-forward: expected [N,H,W,C] input, got shape [${x.shape}]`);
      if (input.dtype !== 'float32') input = tf.cast(input, 'float32');
      if (graph.inputRescale) input = tf.add(tf.mul(input, graph.inputRescale.scale), graph.inputRescale.offset);
      if (steps.length === 0) return tos.map(() => (input === x ? tf.clone(x) : input));
      // Reference counts so intermediates are freed as soon as their last consumer ran.
      const uses = new Map<string, number>();
      for (const s of steps) for (const i of s.inputs) uses.set(i, (uses.get(i) ?? 0) + 1);
      const values = new Map<string, Tensor>([[from, input]]);
      const outs = new Map<string, Tensor>();
      steps.forEach((s, k) => {
        const ins = s.inputs.map((i) => {
          const v = values.get(i);
          if (!v) throw new Error(`fast-forward: '${s.out}' needs '${i}', which is not computed from '${from}'`);
          return v;
        });
        const y = runs[k](ins);
        values.set(s.out, y);
        for (const i of s.inputs) {
          const left = (uses.get(i) ?? 0) - 1;
          uses.set(i, left);
          if (left === 0 && !wanted.has(i)) {
            const v = values.get(i);
            if (v && v !== x) v.dispose();
            values.delete(i);
          }
        }
        if (wanted.has(s.out)) outs.set(s.out, y);
      });
      return tos.map((to) => {
        const o = outs.get(to);
        if (!o) throw new Error(`fast-forward: '${to}' was not produced`);
        return o;
      });
    });
  }

  return {
    layerNames,
    inputName,
    outputName,
    describe(opts = {}) {
      const from = opts.from ?? inputName;
      const to = opts.to ?? outputName;
      return plan(from, to).graph.ops.map((s) =>
        `${s.out} <- [${s.inputs.join(', ')}] ${s.layers.length > 1 ? `(fused: ${s.layers.join(' + ')})` : ''}`.trim(),
      );
    },
    forward(x, opts = {}) {
      return run(x, opts.from ?? inputName, [opts.to ?? outputName])[0];
    },
    forwardMany(x, opts) {
      if (!opts.to.length) throw new Error('fast-forward: forwardMany needs at least one output');
      return run(x, opts.from ?? inputName, opts.to);
    },
    dispose() {
      for (const w of weights.values()) tf.dispose(w);
      weights.clear();
      plans.clear();
    },
  };
}
