import { createHash } from 'node:crypto';
import { readdirSync, readFileSync } from 'node:fs';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import type { LayersModel, Tensor } from '@tensorflow/tfjs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { initBackend } from '../core/backend.js';
import { buildClassifier, toClassProbabilities } from '../core/classifier.js';
import { exportFormats } from '../core/export/export-formats.js';
import { keepKernelFloat32 } from '../core/export/float16-weights.js';
import { readOnnx, writeOnnx } from '../core/export/onnx.js';
import { armnnUnavailable, runArmnn } from '../core/export/tflite/armnn.js';
import { calibrateRanges } from '../core/export/tflite/calibrate.js';
import { BuiltinOperator, readModel, TensorType } from '../core/export/tflite/flatbuffer.js';
import { exportTflite, openTfliteRuntime, type TfliteRuntimeStatus, verifyTflite, writeTflite } from '../core/export/tflite/index.js';
import { type ConvOp, type DenseOp, type FusedGraph, fusedGraph } from '../core/graph/fused-graph.js';
import { decodeImage } from '../core/image.js';
import type { Manifest, Verification } from '../core/manifest.js';
import { tf } from '../core/tf.js';
import { loadBaseWeights } from '../core/weights/index.js';
import { randomizeBatchNorm } from './helpers/fast-forward-fixtures.js';
import { ALPACA_DIR, hasAlpaca, hasWeights035, skipReason, WEIGHTS_0_35 } from './helpers/shared.js';

const SIZE = 96;

/** Byte comparisons by digest: vitest's deep equality walks a megabyte array element by element. */
const sha = (b: Uint8Array) => createHash('sha256').update(b).digest('hex');

/** Deterministic photo-like pixels: smooth gradients plus seeded noise. */
function pixels(n: number, seed: number): Uint8Array[] {
  let s = seed >>> 0;
  const rnd = () => {
    s = (s * 1664525 + 1013904223) >>> 0;
    return s / 2 ** 32;
  };
  return Array.from({ length: n }, () => {
    const a = rnd() * 255;
    const b = rnd() * 4;
    const img = new Uint8Array(SIZE * SIZE * 3);
    for (let i = 0; i < img.length; i++) {
      const x = (i / 3) % SIZE;
      const y = Math.floor(i / 3 / SIZE);
      img[i] = Math.max(0, Math.min(255, Math.round(a + b * (x - y) + ((i % 3) - 1) * 40 + (rnd() - 0.5) * 60)));
    }
    return img;
  });
}

function predict(model: LayersModel, imgs: readonly Uint8Array[], numClasses: number): number[][] {
  const flat = new Float32Array(imgs.length * SIZE * SIZE * 3);
  for (const [i, p] of imgs.entries()) flat.set(p, i * SIZE * SIZE * 3);
  const out = tf.tidy(() => model.predict(tf.tensor4d(flat, [imgs.length, SIZE, SIZE, 3])) as Tensor);
  const rows = toClassProbabilities(out.dataSync() as Float32Array, numClasses);
  out.dispose();
  return rows;
}

const tiny = new Map<number, LayersModel>();
/** One random-weight classifier per class count for the whole file (building one takes seconds on a loaded machine). */
function tinyModel(numClasses: number): LayersModel {
  let model = tiny.get(numClasses);
  if (!model) {
    model = buildClassifier({ alpha: 0.35, inputSize: SIZE, numClasses, seed: 11 });
    randomizeBatchNorm(model, 5);
    tiny.set(numClasses, model);
  }
  return model;
}

function opNames(bytes: Uint8Array): string[] {
  const m = readModel(bytes);
  const sg = m.subgraphs(0);
  if (!sg) throw new Error('no subgraph');
  const names: string[] = [];
  for (let i = 0; i < sg.operatorsLength(); i++) {
    const code = m.operatorCodes(sg.operators(i)?.opcodeIndex() ?? -1);
    names.push(BuiltinOperator[Math.max(code?.builtinCode() ?? 0, code?.deprecatedBuiltinCode() ?? 0)]);
  }
  return names;
}

let runtime: TfliteRuntimeStatus;
const classes3 = ['cat', 'dog', 'eel'];

beforeAll(async () => {
  await initBackend('auto', () => {});
  runtime = await openTfliteRuntime();
  if (!runtime.ok) console.warn(`export-tflite: interpreter checks skipped: ${runtime.reason}`);
});
afterAll(async () => {
  if (runtime?.ok) await runtime.runtime.close();
  for (const m of tiny.values()) m.dispose();
});

describe('TFLite writer (tiny random-weight MobileNetV2 alpha 0.35 at 96)', () => {
  it('writes builtin ops only, the right tensor types, and the labels and metadata; same model -> same bytes', () => {
    const model = tinyModel(3);
    const graph = fusedGraph(model);
    const f32 = writeTflite(graph, { variant: 'float32', classes: classes3 });
    expect(sha(writeTflite(fusedGraph(model), { variant: 'float32', classes: classes3 }))).toBe(sha(f32));
    const ops = opNames(f32);
    expect(new Set(ops)).toEqual(new Set(['MUL', 'ADD', 'CONV_2D', 'DEPTHWISE_CONV_2D', 'MEAN', 'FULLY_CONNECTED', 'SOFTMAX']));

    const m = readModel(f32);
    const sg = m.subgraphs(0);
    const input = sg?.tensors(sg.inputs(0) ?? -1);
    const output = sg?.tensors(sg.outputs(0) ?? -1);
    expect([input?.type(), Array.from(input?.shapeArray() ?? [])]).toEqual([TensorType.FLOAT32, [1, SIZE, SIZE, 3]]);
    expect([output?.name(), Array.from(output?.shapeArray() ?? [])]).toEqual(['probabilities', [1, 3]]);
    const meta = new Map<string, string>();
    for (let i = 0; i < m.metadataLength(); i++) {
      const e = m.metadata(i);
      const data = m.buffers(e?.buffer() ?? 0)?.dataArray();
      meta.set(e?.name() ?? '', new TextDecoder().decode(data ?? new Uint8Array()));
    }
    expect(meta.get('labels')).toBe('cat\ndog\neel\n');
    expect(JSON.parse(meta.get('edgetune') ?? '{}')).toMatchObject({
      format: 'tflite',
      classes: classes3,
      input: { dtype: 'float32', range: [0, 255] },
    });

    const f16 = writeTflite(graph, { variant: 'float16', classes: classes3 });
    expect(opNames(f16)).toContain('DEQUANTIZE');
    // The shared float16 rule (as in onnx-float16): depthwise kernels, linear convs of <= 64k weights
    // and every bias stay float32; the other conv and dense kernels are float16 + DEQUANTIZE.
    const sg16 = readModel(f16).subgraphs(0);
    if (!sg16) throw new Error('no subgraph');
    const typeOf = new Map<string, number>();
    for (let i = 0; i < sg16.tensorsLength(); i++) {
      const t = sg16.tensors(i);
      if (t?.name()) typeOf.set(t.name() as string, t.type());
    }
    let halfWeights = 0;
    let keptWeights = 0;
    for (const op of graph.ops) {
      if (op.op !== 'conv2d' && op.op !== 'depthwiseConv2d' && op.op !== 'dense') continue;
      const kept = op.op === 'depthwiseConv2d' || (op.op === 'conv2d' && op.activation === 'linear' && op.kernel.length <= 65_536);
      expect(typeOf.get(`${op.out}/kernel/float16`), `${op.out} kernel`).toBe(kept ? undefined : TensorType.FLOAT16);
      if (kept) expect(typeOf.get(`${op.out}/kernel`), `${op.out} kernel`).toBe(TensorType.FLOAT32);
      if (kept) keptWeights += op.kernel.length;
      else halfWeights += op.kernel.length;
      expect(typeOf.get(`${op.out}/bias`), `${op.out} bias`).toBe(TensorType.FLOAT32);
      expect(typeOf.has(`${op.out}/bias/float16`)).toBe(false);
    }
    expect(halfWeights).toBeGreaterThan(0);
    expect(keptWeights).toBeGreaterThan(0);
    // float16 halves the kernels it stores (within 2% of the float32 file for metadata and alignment).
    expect(Math.abs(f32.length - f16.length - 2 * halfWeights) / f32.length).toBeLessThan(0.02);
    // Same rule as the ONNX float16 writer: the same number of weights stored as float16.
    const onnx16 = readOnnx(
      writeOnnx(graph, { classes: classes3, weights: 'float16', float32Weights: (_id, op) => keepKernelFloat32(op) }),
    );
    const inits = ((onnx16.graph as { initializer: { data_type: number; dims: number[] }[] }).initializer ?? []).filter(
      (t) => t.data_type === 10,
    );
    expect(inits.reduce((n, t) => n + t.dims.reduce((a, d) => a * d, 1), 0)).toBe(halfWeights);
  });

  it('int8: per-channel int8 conv weights, int32 biases, uint8 input with the preprocessing as its quantization; reproducible', () => {
    const model = tinyModel(2);
    const graph = fusedGraph(model);
    const calib = pixels(8, 1);
    const before = tf.memory().numTensors;
    const ranges = calibrateRanges(graph, calib);
    expect(tf.memory().numTensors).toBe(before);
    const a = writeTflite(graph, { variant: 'int8', classes: ['no', 'yes'], ranges });
    const b = writeTflite(fusedGraph(model), {
      variant: 'int8',
      classes: ['no', 'yes'],
      ranges: calibrateRanges(fusedGraph(model), calib),
    });
    expect(sha(b)).toBe(sha(a));
    const m = readModel(a);
    const sg = m.subgraphs(0);
    if (!sg) throw new Error('no subgraph');
    const input = sg.tensors(sg.inputs(0) ?? -1);
    expect(input?.type()).toBe(TensorType.UINT8);
    expect([input?.quantization()?.scale(0), Number(input?.quantization()?.zeroPoint(0))]).toEqual([Math.fround(1 / 127.5), 128]);
    const types = new Map<string, number>();
    for (let i = 0; i < sg.tensorsLength(); i++) {
      const t = sg.tensors(i);
      if (t?.name()?.endsWith('/kernel')) {
        types.set('kernel', t.type());
        if (t.shapeLength() === 4) expect(t.quantization()?.scaleLength()).toBe(t.shape(t.name()?.includes('depthwise') ? 3 : 0));
      }
      if (t?.name()?.endsWith('/bias')) types.set('bias', t.type());
    }
    expect(Object.fromEntries(types)).toEqual({ kernel: TensorType.INT8, bias: TensorType.INT32 });
    const ops = opNames(a);
    expect(ops[0]).toBe('QUANTIZE');
    expect(ops.slice(-2)).toEqual(['SOFTMAX', 'DEQUANTIZE']);
    expect(() => writeTflite(graph, { variant: 'int8', classes: ['no', 'yes'] })).toThrow(/calibrated/);
    expect(() => writeTflite(graph, { variant: 'float32', classes: ['only one'] })).toThrow(/2 values for 1 classes/);
  });
});

describe('TFLite files in TensorFlow Lite (WASM interpreter in Chromium)', () => {
  it('float32 within 1e-4 and float16 within 1e-2 of the tfjs model (3 classes and binary); int8 agrees', async (ctx) => {
    if (!runtime.ok) ctx.skip();
    for (const [numClasses, classes] of [
      [3, classes3],
      [2, ['no', 'yes']],
    ] as const) {
      const model = tinyModel(numClasses);
      const graph = fusedGraph(model);
      const imgs = pixels(6, 2 + numClasses);
      const expected = predict(model, imgs, numClasses);
      for (const variant of ['float32', 'float16', 'int8'] as const) {
        const r = await exportTflite(graph, variant, {
          classes: [...classes],
          verify: { pixels: imgs, expected },
          calibration: variant === 'int8' ? pixels(16, 9) : undefined,
          runtime,
        });
        expect(r.verification.status, `${variant} ${numClasses} classes`).toBe('passed');
        if (r.verification.status !== 'passed') continue;
        if (variant === 'float32') expect(r.verification.maxAbsDiff).toBeLessThanOrEqual(1e-4);
        if (variant === 'float16') expect(r.verification.maxAbsDiff).toBeLessThanOrEqual(1e-2);
        // A random-weight model's probabilities sit close together: int8 is only checked to be close.
        if (variant === 'int8') expect(r.verification.maxAbsDiff).toBeLessThan(0.05);
      }
    }
  });

  it('rejects a file that disagrees with the model', async (ctx) => {
    if (!runtime.ok) ctx.skip();
    const model = tinyModel(3);
    const graph = fusedGraph(model);
    const imgs = pixels(2, 7);
    const expected = predict(model, imgs, 3);
    const good = writeTflite(graph, { variant: 'float32', classes: classes3 });
    // The same graph with the first logit's bias nudged by 0.01: a wrong file the verification must catch.
    const op = graph.ops.find((o) => o.op === 'dense');
    if (op?.op !== 'dense' || !op.bias) throw new Error('no dense');
    op.bias = op.bias.map((b, i) => (i === 0 ? b + 0.01 : b));
    const bad = writeTflite(graph, { variant: 'float32', classes: classes3 });
    expect(sha(bad)).not.toBe(sha(good));
    if (!runtime.ok) return;
    const v = await verifyTflite(bad, 'float32', { pixels: imgs, expected }, runtime.runtime);
    expect(v.status).toBe('failed');
    await expect(exportTflite(graph, 'float32', { classes: classes3, verify: { pixels: imgs, expected }, runtime })).rejects.toThrow(
      /exceeds the float32 tolerance/,
    );
  });

  it('says plainly when there is no interpreter', async () => {
    const model = tinyModel(3);
    const imgs = pixels(1, 3);
    const r = await exportTflite(fusedGraph(model), 'float32', {
      classes: classes3,
      verify: { pixels: imgs, expected: predict(model, imgs, 3) },
      runtime: { ok: false, reason: 'no Chromium found' },
    });
    expect(r.verification).toEqual({ status: 'unavailable', variant: 'float32', reason: 'no Chromium found' });
  });
});

describe.skipIf(!hasWeights035 || !hasAlpaca)('TFLite int8 of the shared ImageNet base (alpha 0.35 at 96) on alpaca photos', () => {
  if (!hasWeights035 || !hasAlpaca) console.log(skipReason('weights/mobilenet_v2_0.35_224_imagenet and datasets/alpaca'));
  it('float32 within 1e-4; int8 calibrated on 48 photos agrees on the top-1 class of 16 others', async (ctx) => {
    if (!runtime.ok) ctx.skip();
    const model = buildClassifier({ alpha: 0.35, inputSize: SIZE, numClasses: 2, seed: 3 });
    await loadBaseWeights(model, WEIGHTS_0_35, { log: () => {} });
    const files = ['alpaca', 'not_alpaca'].flatMap((c) =>
      readdirSync(path.join(ALPACA_DIR, c))
        .sort()
        .slice(0, 32)
        .map((f) => path.join(ALPACA_DIR, c, f)),
    );
    const imgs = await Promise.all(files.map(async (f) => (await decodeImage(readFileSync(f), { size: SIZE })).data));
    const calib = imgs.filter((_, i) => i % 4 !== 0);
    const check = imgs.filter((_, i) => i % 4 === 0);
    const expected = predict(model, check, 2);
    const graph = fusedGraph(model);
    const f32 = await exportTflite(graph, 'float32', { classes: ['alpaca', 'not_alpaca'], verify: { pixels: check, expected }, runtime });
    expect(f32.verification.status === 'passed' && f32.verification.maxAbsDiff).toBeLessThanOrEqual(1e-4);
    const i8 = await exportTflite(graph, 'int8', {
      classes: ['alpaca', 'not_alpaca'],
      verify: { pixels: check, expected },
      calibration: calib,
      runtime,
    });
    expect(i8.verification.status).toBe('passed');
    if (i8.verification.status === 'passed') {
      console.log(
        `int8 vs tfjs on 16 alpaca photos: max |dp| ${i8.verification.maxAbsDiff.toFixed(4)}, top-1 agreement ${i8.verification.top1Agreement}`,
      );
      expect(i8.verification.top1Agreement).toBeGreaterThanOrEqual(14 / 16);
      expect(i8.bytes.length).toBeLessThan(f32.bytes.length / 2.5);
    }
    model.dispose();
  });
});

describe('exportFormats with the TFLite formats (writer registry)', () => {
  it('writes model.tflite, model-int8.tflite and labels.txt with their records in exports.json; int8 needs calibration images', async (ctx) => {
    if (!runtime.ok) ctx.skip();
    const model = tinyModel(2);
    const dir = await mkdtemp(path.join(os.tmpdir(), 'tflite-exports-'));
    try {
      const px = pixels(4, 31);
      const verification: Verification = {
        shape: [4, SIZE, SIZE, 3],
        pixels: Buffer.concat(px).toString('base64'),
        labels: [0, 1, 1, 0],
        probabilities: [],
      };
      const manifest = {
        name: 'unit',
        version: '20261201T000000Z-00000000',
        classes: ['no', 'yes'],
        input: { size: SIZE, channels: 3, resize: 'stretch' },
        preprocessing: { scale: 1 / 127.5, offset: -1, inModel: true },
      } as Manifest;
      await expect(exportFormats(model, manifest, ['tflite-int8'], { outDir: dir, verification })).rejects.toThrow(
        /needs calibration images/,
      );
      const calibration = { pixels: Buffer.concat(pixels(8, 32)), shape: [8, SIZE, SIZE, 3] as [number, number, number, 3] };
      const r = await exportFormats(model, manifest, ['tflite', 'tflite-int8'], { outDir: dir, verification, calibration });
      expect(r.exports.map((e) => e.format)).toEqual(['tflite', 'tflite-int8']);
      const [f32, i8] = r.exports;
      expect(f32.verification).toMatchObject({ images: 4, top1Agreement: 1, tolerance: 1e-4 });
      expect(f32.verification.maxAbsDiff).toBeLessThanOrEqual(1e-4);
      expect(f32.runtime).toMatch(/^TensorFlow Lite \(WASM/);
      expect(i8.weights).toBe('int8');
      expect(f32.files.map((f) => f.path)).toEqual(['model.tflite', 'labels.txt']);
      expect(await readFile(path.join(dir, 'labels.txt'), 'utf8')).toBe('no\nyes\n');
      const bytes = new Uint8Array(await readFile(path.join(dir, 'model-int8.tflite')));
      expect(sha(bytes)).toBe(i8.sha256);
      const meta = readModel(bytes);
      const names = Array.from({ length: meta.metadataLength() }, (_, i) => meta.metadata(i)?.name());
      expect(names).toEqual(['edgetune', 'labels']);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});

describe('TFLite files in a second reader: Arm NN 20.08 (TfLiteParser, CpuRef backend)', () => {
  it('reads the float32 and int8 files and computes what TensorFlow Lite computes', async (ctx) => {
    const why = await armnnUnavailable();
    if (why) {
      console.warn(`export-tflite: Arm NN check skipped: ${why}`);
      ctx.skip();
    }
    const model = tinyModel(3);
    const graph = fusedGraph(model);
    const imgs = pixels(3, 41);
    const expected = predict(model, imgs, 3);
    const f32 = writeTflite(graph, { variant: 'float32', classes: classes3 });
    const a32 = await runArmnn(
      f32,
      imgs.map((p) => Float32Array.from(p)),
    );
    expect(maxDiffRows(a32, expected)).toBeLessThanOrEqual(1e-4);
    const i8 = writeTflite(graph, { variant: 'int8', classes: classes3, ranges: calibrateRanges(graph, pixels(8, 42)) });
    const a8 = await runArmnn(i8, imgs);
    expect(maxDiffRows(a8, expected)).toBeLessThan(0.05);
    if (runtime.ok) {
      // The two engines' integer kernels on the same int8 file: equal up to a couple of output steps (1/256).
      const t8 = (await runtime.runtime.run(i8, imgs)).outputs;
      const d = maxDiffRows(
        a8,
        t8.map((r) => Array.from(r)),
      );
      console.log(`int8 file: Arm NN vs TensorFlow Lite max |dp| ${d.toFixed(5)}`);
      expect(d).toBeLessThanOrEqual(2 / 256 + 1e-6);
    }
  });
});

function maxDiffRows(a: readonly ArrayLike<number>[], b: readonly (readonly number[])[]): number {
  let d = 0;
  for (const [i, row] of a.entries()) for (let j = 0; j < row.length; j++) d = Math.max(d, Math.abs(row[j] - b[i][j]));
  return d;
}

describe('a hand-built graph: padding that SAME does not produce becomes PAD + VALID', () => {
  it('conv2d with pads [1, 1, 1, 1] at stride 2 on 8x8, relu6, add, depthwise with [0, 1, 0, 1], pool, dense, softmax', async (ctx) => {
    const rnd = (n: number, seed: number) => Float32Array.from({ length: n }, (_, i) => Math.sin(i * 12.9898 + seed * 78.233) * 0.5);
    const graph: FusedGraph = {
      input: 'image',
      inputShape: [8, 8, 3],
      outputs: ['probs'],
      inputRescale: { scale: 1 / 127.5, offset: -1 },
      ops: [
        {
          op: 'conv2d',
          out: 'c1',
          inputs: ['image'],
          layers: [],
          shape: [4, 4, 4],
          weightsId: 'c1',
          kernel: rnd(3 * 3 * 3 * 4, 1),
          kernelShape: [3, 3, 3, 4],
          bias: rnd(4, 2),
          strides: [2, 2],
          dilations: [1, 1],
          pad: [1, 1, 1, 1],
          activation: 'relu6',
        },
        {
          op: 'conv2d',
          out: 'c2',
          inputs: ['c1'],
          layers: [],
          shape: [4, 4, 4],
          weightsId: 'c2',
          kernel: rnd(4 * 4, 3),
          kernelShape: [1, 1, 4, 4],
          bias: rnd(4, 4),
          strides: [1, 1],
          dilations: [1, 1],
          pad: 'valid',
          activation: 'linear',
        },
        { op: 'add', out: 'sum', inputs: ['c1', 'c2'], layers: [], shape: [4, 4, 4] },
        {
          op: 'depthwiseConv2d',
          out: 'd1',
          inputs: ['sum'],
          layers: [],
          shape: [2, 2, 4],
          weightsId: 'd1',
          kernel: rnd(3 * 3 * 4, 5),
          kernelShape: [3, 3, 4, 1],
          bias: rnd(4, 6),
          strides: [2, 2],
          dilations: [1, 1],
          pad: [0, 1, 0, 1],
          activation: 'relu',
        },
        { op: 'globalAveragePool', out: 'pool', inputs: ['d1'], layers: [], shape: [4], keepDims: false },
        {
          op: 'dense',
          out: 'logits',
          inputs: ['pool'],
          layers: [],
          shape: [3],
          kernel: rnd(4 * 3, 7).map((x) => x * 8),
          kernelShape: [4, 3],
          bias: rnd(3, 8),
          activation: 'linear',
        },
        { op: 'activation', out: 'probs', inputs: ['logits'], layers: [], shape: [3], activation: 'softmax' },
      ],
    };
    const bytes = writeTflite(graph, { variant: 'float32', classes: classes3 });
    const ops = opNames(bytes);
    expect(ops.filter((o) => o === 'PAD')).toHaveLength(1);
    // The depthwise [0, 1, 0, 1] at stride 2 on 4x4 is TF's SAME: no PAD for it.
    expect(ops).toEqual(['MUL', 'ADD', 'PAD', 'CONV_2D', 'CONV_2D', 'ADD', 'DEPTHWISE_CONV_2D', 'MEAN', 'FULLY_CONNECTED', 'SOFTMAX']);
    if (!runtime.ok) ctx.skip();
    const imgs = pixels(1, 51).map((p) => p.subarray(0, 8 * 8 * 3));
    // Reference in plain tfjs ops.
    const ref = tf.tidy(() => {
      const x = tf
        .tensor4d(Float32Array.from(imgs[0]), [1, 8, 8, 3])
        .mul(1 / 127.5)
        .sub(1);
      const op = (i: number) => graph.ops[i] as ConvOp;
      const c1 = tf
        .conv2d(
          tf.pad(x, [
            [0, 0],
            [1, 1],
            [1, 1],
            [0, 0],
          ]) as tf.Tensor4D,
          tf.tensor4d(op(0).kernel, op(0).kernelShape),
          2,
          'valid',
        )
        .add(tf.tensor1d(op(0).bias))
        .clipByValue(0, 6);
      const c2 = tf.conv2d(c1 as tf.Tensor4D, tf.tensor4d(op(1).kernel, op(1).kernelShape), 1, 'valid').add(tf.tensor1d(op(1).bias));
      const sum = c1.add(c2) as tf.Tensor4D;
      const d1 = tf.relu(
        tf
          .depthwiseConv2d(
            tf.pad(sum, [
              [0, 0],
              [0, 1],
              [0, 1],
              [0, 0],
            ]) as tf.Tensor4D,
            tf.tensor4d(op(3).kernel, op(3).kernelShape),
            2,
            'valid',
          )
          .add(tf.tensor1d(op(3).bias)),
      );
      const dense = graph.ops[5] as DenseOp;
      const logits = tf
        .matMul(d1.mean([1, 2]) as tf.Tensor2D, tf.tensor2d(dense.kernel, dense.kernelShape))
        .add(tf.tensor1d(dense.bias ?? new Float32Array(3)));
      return Array.from(tf.softmax(logits).dataSync());
    });
    if (!runtime.ok) return;
    const got = (await runtime.runtime.run(bytes, [Float32Array.from(imgs[0])])).outputs[0];
    expect(maxDiffRows([got], [ref])).toBeLessThanOrEqual(1e-5);
    expect(Math.max(...ref) - Math.min(...ref)).toBeGreaterThan(0.05);
  });
});
