import type { LayersModel } from '@tensorflow/tfjs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { initBackend } from '../core/backend.js';
import { buildClassifier, HEAD, PREPROCESS } from '../core/classifier.js';
import { type ConvOp, fusedGraph, subgraph } from '../core/graph/fused-graph.js';
import { buildMobileNetV2 } from '../core/mobilenet-v2.js';
import { tf } from '../core/tf.js';
import { randomizeBatchNorm } from './helpers/fast-forward-fixtures.js';

const BOUNDARY = 'block_13_expand_relu';

beforeAll(async () => {
  await initBackend('wasm', () => {});
});

describe('fusedGraph of a classifier (alpha 0.35, 64x64, 2 classes)', () => {
  let model: LayersModel;
  beforeAll(() => {
    model = buildClassifier({ alpha: 0.35, inputSize: 64, numClasses: 2, seed: 3 });
    randomizeBatchNorm(model);
  });
  afterAll(() => model.dispose());

  it('is plain data: a structured clone is equal, and no tensor is created or held', () => {
    const before = tf.memory().numTensors;
    const g = fusedGraph(model);
    expect(tf.memory().numTensors).toBe(before);
    const clone = structuredClone(g);
    // Typed arrays compared as bytes (vitest's deep equality walks them element by element, slowly).
    const arrays: Float32Array[] = [];
    const strip = (_key: string, v: unknown) => {
      if (!(v instanceof Float32Array)) return v;
      arrays.push(v);
      return `<${arrays.length}:${v.length}>`;
    };
    const a = JSON.stringify(g, strip);
    const originals = arrays.splice(0);
    expect(JSON.stringify(clone, strip)).toBe(a);
    expect(arrays.every((c, i) => Buffer.compare(Buffer.from(c.buffer), Buffer.from(originals[i].buffer)) === 0)).toBe(true);
    expect(originals.length).toBeGreaterThan(100);
    expect(g.input).toBe('image');
    expect(g.inputShape).toEqual([64, 64, 3]);
    expect(g.outputs).toEqual([HEAD.probabilities]);
    // The classifier has its own Rescaling layer: no extra input rescale.
    expect(g.inputRescale).toBeUndefined();
    expect(g.ops[0]).toMatchObject({ op: 'rescale', scale: PREPROCESS.scale, offset: PREPROCESS.offset });
    expect(g.ops.at(-2)).toMatchObject({ op: 'dense', kernelShape: [1280, 1] });
    expect(g.ops.at(-1)).toMatchObject({ op: 'activation', activation: 'sigmoid', out: HEAD.probabilities });
    expect(g.ops.find((o) => o.out === HEAD.dropout)?.op).toBe('identity');
    // Every input of every op is produced earlier (topological order).
    const seen = new Set([g.input]);
    for (const o of g.ops) {
      for (const i of o.inputs) expect(seen.has(i), `${o.out} reads ${i}`).toBe(true);
      seen.add(o.out);
    }
    // Nothing left for a Keras fallback, no BatchNorm or ZeroPadding left standing.
    expect(g.ops.filter((o) => o.op === 'layer' || o.op === 'pad')).toEqual([]);
  });

  it("folds the stride-2 ZeroPadding into Keras' asymmetric explicit pads and fuses ReLU6", () => {
    const g = fusedGraph(model);
    const conv1 = g.ops.find((o) => o.out === 'Conv1_relu') as ConvOp;
    expect(conv1).toMatchObject({ op: 'conv2d', layers: ['Conv1_pad', 'Conv1', 'bn_Conv1', 'Conv1_relu'], activation: 'relu6' });
    expect(conv1.strides).toEqual([2, 2]);
    expect(conv1.pad).toEqual([0, 1, 0, 1]);
    expect(conv1.kernelShape).toEqual([3, 3, 3, 16]);
    expect(conv1.shape).toEqual([32, 32, 16]);
    const dw = g.ops.find((o) => o.out === 'block_1_depthwise_relu') as ConvOp;
    expect(dw).toMatchObject({ op: 'depthwiseConv2d', pad: [0, 1, 0, 1], strides: [2, 2] });
    const project = g.ops.find((o) => o.out === 'block_1_project_BN') as ConvOp;
    expect(project).toMatchObject({ op: 'conv2d', pad: 'same', activation: 'linear', weightsId: 'block_1_project+block_1_project_BN' });
  });

  it('folds BatchNorm in float64 and rounds once: equals conv+BN of the layers model on a real input', () => {
    const g = fusedGraph(model);
    const op = g.ops.find((o) => o.out === 'block_2_project_BN') as ConvOp;
    // Recompute one folded weight by hand from the layer weights.
    const [k] = model.getLayer('block_2_project').getWeights();
    const [gamma, beta, mean, variance] = model.getLayer('block_2_project_BN').getWeights();
    const eps = (model.getLayer('block_2_project_BN').getConfig() as { epsilon: number }).epsilon;
    const outC = op.kernelShape[3];
    const c = 5;
    const s = gamma.dataSync()[c] / Math.sqrt(variance.dataSync()[c] + eps);
    expect(op.kernel[7 * outC + c]).toBe(Math.fround(k.dataSync()[7 * outC + c] * s));
    expect(op.bias[c]).toBe(Math.fround(-mean.dataSync()[c] * s + beta.dataSync()[c]));
  });

  it('keeps requested layer outputs observable, and subgraph cuts the frozen part with two outputs', () => {
    const g = fusedGraph(model, { keep: [BOUNDARY, HEAD.pool, 'block_13_expand_BN'] });
    expect(g.ops.find((o) => o.out === 'block_13_expand_BN')?.layers).toEqual(['block_13_expand', 'block_13_expand_BN']);
    expect(g.ops.find((o) => o.out === BOUNDARY)).toMatchObject({ op: 'activation', activation: 'relu6' });
    const frozen = subgraph(g, { outputs: [BOUNDARY, HEAD.pool] });
    expect(frozen.outputs).toEqual([BOUNDARY, HEAD.pool]);
    expect(frozen.ops.some((o) => o.op === 'dense')).toBe(false);
    expect(frozen.ops.at(-1)).toMatchObject({ op: 'globalAveragePool', out: HEAD.pool, shape: [1280] });
    const tail = subgraph(g, { from: BOUNDARY, outputs: [HEAD.probabilities] });
    expect(tail.input).toBe(BOUNDARY);
    expect(tail.inputShape).toEqual([4, 4, 192]);
    expect(tail.ops[0].inputs).toEqual([BOUNDARY]);
    expect(tail.inputRescale).toBeUndefined();
    expect(() => subgraph(g, { from: 'block_2_project_BN', outputs: ['block_2_add'] })).toThrow(/depends on the model input/);
    expect(() => subgraph(fusedGraph(model), { outputs: ['block_13_expand'] })).toThrow(/fused away/);
    expect(() => fusedGraph(model, { keep: ['nope'] })).toThrow(/not in the model/);
  });
});

describe('fusedGraph of a bare base', () => {
  it('records the x/127.5-1 input rescale a bare Keras base expects (none with inputRescale: none)', () => {
    const base = buildMobileNetV2({ alpha: 0.35, inputSize: 32 });
    expect(fusedGraph(base).inputRescale).toEqual({ scale: PREPROCESS.scale, offset: PREPROCESS.offset });
    expect(fusedGraph(base, { inputRescale: 'none' }).inputRescale).toBeUndefined();
    expect(fusedGraph(base).outputs).toEqual(['out_relu']);
    base.dispose();
  });
});
