import { execFileSync } from 'node:child_process';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import type { LayersModel, Tensor } from '@tensorflow/tfjs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { initBackend } from '../core/backend.js';
import { buildClassifier, HEAD } from '../core/classifier.js';
import { ExportsSchema, exportFormats, exportFrozenOnnx, tfjsProbabilities } from '../core/export/export-formats.js';
import { parseFormats } from '../core/export/formats.js';
import { onnxModelType, readOnnx, writeOnnx } from '../core/export/onnx.js';
import { onnxProbabilities, onnxSession } from '../core/export/onnx-runtime.js';
import { createFastForward } from '../core/fast-forward.js';
import { fusedGraph } from '../core/graph/fused-graph.js';
import type { Manifest, Verification } from '../core/manifest.js';
import { buildMobileNetV2 } from '../core/mobilenet-v2.js';
import { tf } from '../core/tf.js';
import { randomizeBatchNorm } from './helpers/fast-forward-fixtures.js';

const SIZE = 64;
const BOUNDARY = 'block_13_expand_relu';

/** python3 with the onnx package (Debian's python3-onnx is for /usr/bin/python3, not a pyenv shim's). */
const python = ['python3', '/usr/bin/python3'].find((p) => {
  try {
    execFileSync(p, ['-c', 'import onnx'], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
});

function pixels(n: number, seed: number): Uint8Array {
  const out = new Uint8Array(n * SIZE * SIZE * 3);
  let s = seed;
  for (let i = 0; i < out.length; i++) {
    s = (s * 1103515245 + 12345) >>> 0;
    out[i] = s >>> 24;
  }
  return out;
}

function manifestFor(classes: string[]): Manifest {
  return {
    name: 'unit',
    version: '20261201T000000Z-00000000',
    classes,
    input: { size: SIZE, channels: 3, resize: 'stretch' },
    preprocessing: { scale: 1 / 127.5, offset: -1, inModel: true },
  } as Manifest;
}

function maxDiff(a: number[][], b: number[][]): number {
  let d = 0;
  a.forEach((r, i) => {
    r.forEach((v, j) => {
      d = Math.max(d, Math.abs(v - b[i][j]));
    });
  });
  return d;
}

beforeAll(async () => {
  await initBackend('wasm', () => {});
});

describe.each([2, 3])('ONNX export of a random-weight classifier with %i classes (alpha 0.35, 64x64)', (numClasses) => {
  let model: LayersModel;
  const classes = Array.from({ length: numClasses }, (_, i) => `class_${i}`);
  const px = pixels(6, 11 + numClasses);
  const shape: [number, number, number, 3] = [6, SIZE, SIZE, 3];
  beforeAll(() => {
    model = buildClassifier({ alpha: 0.35, inputSize: SIZE, numClasses, seed: 5 });
    randomizeBatchNorm(model, 3);
  });
  afterAll(() => model.dispose());

  it('float32 runs in onnxruntime within 1e-4 of the tfjs model, N probabilities per image in label order', async () => {
    const bytes = writeOnnx(fusedGraph(model), { classes });
    const got = await onnxProbabilities(bytes, px, shape);
    const ref = await tfjsProbabilities(model, { pixels: px, shape }, numClasses);
    expect(got).toHaveLength(6);
    expect(got[0]).toHaveLength(numClasses);
    for (const row of got) expect(row.reduce((a, b) => a + b, 0)).toBeCloseTo(1, 5);
    expect(maxDiff(got, ref)).toBeLessThan(1e-4);
  });

  it('float16 weights are within 1e-2, and the file is about half the size', async () => {
    const g = fusedGraph(model);
    const f32 = writeOnnx(g, { classes });
    const f16 = writeOnnx(g, { classes, weights: 'float16' });
    expect(f16.byteLength).toBeLessThan(f32.byteLength * 0.6);
    const got = await onnxProbabilities(f16, px, shape);
    const ref = await tfjsProbabilities(model, { pixels: px, shape }, numClasses);
    expect(maxDiff(got, ref)).toBeLessThan(1e-2);
  });

  it('is reproducible: the same model gives the same bytes, also through a second fused graph', () => {
    const a = writeOnnx(fusedGraph(model), { classes, metadata: { k: 'v' } });
    const b = writeOnnx(fusedGraph(model), { classes, metadata: { k: 'v' } });
    expect(Buffer.compare(Buffer.from(a), Buffer.from(b))).toBe(0);
  });

  it('the plain-object encoding is a valid ModelProto, byte-identical to the message encoding (float32 and float16)', () => {
    // writeOnnx encodes its plain object without verify/fromObject (cold start): decoding it and
    // re-encoding through protobufjs' message path must give the same bytes.
    const type = onnxModelType();
    for (const weights of ['float32', 'float16'] as const) {
      const bytes = writeOnnx(fusedGraph(model), { classes, weights, metadata: { k: 'v' } });
      const message = type.decode(bytes);
      expect(type.verify(message)).toBeNull();
      const again = type.encode(type.fromObject(type.toObject(message, { longs: Number }))).finish();
      expect(Buffer.compare(Buffer.from(bytes), Buffer.from(again))).toBe(0);
    }
  });
});

describe('ONNX model structure and the frozen part', () => {
  let model: LayersModel;
  beforeAll(() => {
    model = buildClassifier({ alpha: 0.35, inputSize: SIZE, numClasses: 2, seed: 9 });
    randomizeBatchNorm(model, 8);
  });
  afterAll(() => model.dispose());

  it('opset 13, NHWC input with one Transpose, explicit asymmetric pads, Clip for ReLU6, metadata', () => {
    const m = readOnnx(writeOnnx(fusedGraph(model), { classes: ['a', 'b'], metadata: { 'edgetune.classes': '["a","b"]' } })) as {
      ir_version: number;
      opset_import: { version: number }[];
      metadata_props: { key: string; value: string }[];
      graph: {
        node: { op_type: string; name: string; attribute?: { name: string; ints?: number[] }[] }[];
        input: { name: string; type: { tensor_type: { shape: { dim: { dim_value?: number; dim_param?: string }[] } } } }[];
        output: { name: string }[];
      };
    };
    expect(m.ir_version).toBe(7);
    expect(m.opset_import[0].version).toBe(13);
    expect(m.metadata_props).toEqual([{ key: 'edgetune.classes', value: '["a","b"]' }]);
    expect(m.graph.input[0].name).toBe('image');
    expect(m.graph.input[0].type.tensor_type.shape.dim).toEqual([
      { dim_param: 'batch' },
      { dim_value: 64 },
      { dim_value: 64 },
      { dim_value: 3 },
    ]);
    expect(m.graph.output.map((o) => o.name)).toEqual([HEAD.probabilities]);
    const ops = m.graph.node.map((n) => n.op_type);
    expect(ops.filter((o) => o === 'Transpose')).toHaveLength(1);
    expect(ops.filter((o) => o === 'BatchNormalization' || o === 'Pad')).toEqual([]);
    const conv1 = m.graph.node.find((n) => n.name === 'Conv1_relu');
    expect(conv1?.attribute?.find((a) => a.name === 'pads')?.ints).toEqual([0, 0, 1, 1]);
    expect(ops).toContain('Clip');
    expect(ops).toContain('GlobalAveragePool');
    expect(ops).toContain('Gemm');
    expect(ops.at(-1)).toBe('Concat');
  });

  it('frozen part: boundary activation (NHWC) and pooled features within 1e-4 of the fused tfjs executor', async () => {
    const bytes = exportFrozenOnnx(model, BOUNDARY);
    const s = await onnxSession(bytes);
    const px = pixels(2, 3);
    const out = await s.run(Float32Array.from(px), [2, SIZE, SIZE, 3]);
    await s.release();
    expect(Object.keys(out)).toEqual([BOUNDARY, HEAD.pool]);
    const ff = createFastForward(model);
    const x = tf.tensor4d(Float32Array.from(px), [2, SIZE, SIZE, 3]);
    for (const name of [BOUNDARY, HEAD.pool]) {
      const ref = ff.forward(x, { to: name }) as Tensor;
      expect(out[name].dims).toEqual(ref.shape);
      const r = ref.dataSync();
      let d = 0;
      for (let i = 0; i < r.length; i++) d = Math.max(d, Math.abs(r[i] - out[name].data[i]));
      expect(d).toBeLessThan(1e-4);
      ref.dispose();
    }
    x.dispose();
    ff.dispose();
  });

  it('frozen part of a bare base (no pooling layer): pooled = the mean of its output, within 1e-4', async () => {
    const base = buildMobileNetV2({ alpha: 0.35, inputSize: SIZE });
    randomizeBatchNorm(base, 4);
    const s = await onnxSession(exportFrozenOnnx(base, BOUNDARY));
    const px = pixels(1, 5);
    const out = await s.run(Float32Array.from(px), [1, SIZE, SIZE, 3]);
    await s.release();
    expect(Object.keys(out)).toEqual([BOUNDARY, 'pooled']);
    const ff = createFastForward(base);
    const x = tf.tensor4d(Float32Array.from(px), [1, SIZE, SIZE, 3]);
    const top = ff.forward(x);
    const ref = tf.tidy(() => tf.mean(top, [1, 2]).dataSync());
    let d = 0;
    for (let i = 0; i < ref.length; i++) d = Math.max(d, Math.abs(ref[i] - out.pooled.data[i]));
    expect(out.pooled.dims).toEqual([1, 1280]);
    expect(d).toBeLessThan(1e-4);
    tf.dispose([x, top]);
    ff.dispose();
    base.dispose();
  });

  it.skipIf(!python)('the python3-onnx checker accepts the float32, float16 and frozen files', async () => {
    const dir = await mkdtemp(path.join(tmpdir(), 'onnx-check-'));
    try {
      const g = fusedGraph(model);
      const files = {
        'a.onnx': writeOnnx(g, { classes: ['a', 'b'] }),
        'b.onnx': writeOnnx(g, { classes: ['a', 'b'], weights: 'float16' }),
        'c.onnx': exportFrozenOnnx(model, BOUNDARY),
      };
      for (const [f, b] of Object.entries(files)) await writeFile(path.join(dir, f), b);
      const script = 'import onnx,sys\nfor f in sys.argv[1:]:\n  onnx.checker.check_model(onnx.load(f), full_check=True)\nprint("ok")';
      const res = execFileSync(python as string, ['-c', script, ...Object.keys(files).map((f) => path.join(dir, f))], { encoding: 'utf8' });
      expect(res.trim()).toBe('ok');
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
  if (!python) console.log('skipped: the ONNX checker needs python3-onnx (apt-get install python3-onnx)');
});

describe('exportFormats', () => {
  let model: LayersModel;
  let dir: string;
  beforeAll(async () => {
    model = buildClassifier({ alpha: 0.35, inputSize: SIZE, numClasses: 2, seed: 4 });
    randomizeBatchNorm(model, 2);
    dir = await mkdtemp(path.join(tmpdir(), 'exports-'));
  });
  afterAll(async () => {
    model.dispose();
    await rm(dir, { recursive: true, force: true });
  });

  it('writes verified files and exports.json with size, sha256 and the measured agreement; unknown and unbuilt ids fail clearly', async () => {
    const px = pixels(4, 21);
    const verification: Verification = {
      shape: [4, SIZE, SIZE, 3],
      pixels: Buffer.from(px).toString('base64'),
      labels: [0, 1, 1, 0],
      probabilities: [],
    };
    const manifest = manifestFor(['cat', 'dog']);
    const r = await exportFormats(model, manifest, ['onnx', 'onnx-float16'], { outDir: dir, verification });
    const onDisk = ExportsSchema.parse(JSON.parse(await readFile(path.join(dir, 'exports.json'), 'utf8')));
    expect(onDisk).toEqual(r);
    expect(r.exports.map((e) => e.format)).toEqual(['onnx', 'onnx-float16']);
    const onnx = r.exports[0];
    const bytes = await readFile(path.join(dir, 'model.onnx'));
    expect(onnx.bytes).toBe(bytes.byteLength);
    expect(onnx.sha256).toMatch(/^[0-9a-f]{64}$/);
    expect(onnx.verification).toMatchObject({ images: 4, labelledImages: 4, top1Agreement: 1, tolerance: 1e-4 });
    expect(onnx.verification.maxAbsDiff).toBeLessThan(1e-4);
    expect(onnx.runtime).toMatch(/^onnxruntime-node 1\.\d+/);
    // Metadata: classes in label order.
    const meta = (readOnnx(bytes) as { metadata_props: { key: string; value: string }[] }).metadata_props;
    expect(JSON.parse(meta.find((m) => m.key === 'edgetune.classes')?.value ?? '')).toEqual(['cat', 'dog']);
    // Re-export: the same bytes.
    const again = await exportFormats(model, manifest, ['onnx'], { outDir: dir, verification });
    expect(again.exports.find((e) => e.format === 'onnx')?.sha256).toBe(onnx.sha256);
    expect(again.exports).toHaveLength(2);
    await expect(exportFormats(model, manifest, ['tfjs'], { outDir: dir, verification })).rejects.toThrow(/not built yet/);
    expect(() => parseFormats('onnx,bogus')).toThrow(/unknown format 'bogus'/);
    expect(parseFormats('onnx, onnx-float16,onnx')).toEqual(['onnx', 'onnx-float16']);
  });
});
