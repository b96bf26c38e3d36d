// tfjs-float16: the tfjs layers model itself (same topology) with its kernels stored as float16
// (tfjs' own weight quantization, `quantization: {dtype: 'float16'}` per weight, dequantized by tfjs
// at load), verified by loading the written files back into tfjs. The float16 rule shared with
// onnx-float16 and tflite-float16 (float16-weights.ts) applies: the kernels of the convs it keeps
// float32 in the fused graph (depthwise, small linear convs) stay float32 here, and so do the
// BatchNorm parameters and biases (a few percent of the bytes).
import { toClassProbabilities } from '../classifier.js';
import type { FusedGraph } from '../graph/fused-graph.js';
import { artifactsFromModelJson, modelJsonText } from '../model-json.js';
import { float32ToFloat16Bits } from '../quantize.js';
import { tf } from '../tf.js';
import { keepKernelFloat32 } from './float16-weights.js';
import { FORMATS } from './formats.js';
import { type ExportFile, type PixelBatch, registerWriter } from './writers.js';

const DIR = FORMATS['tfjs-float16'].file.replace(/\/model\.json$/, '');

/** The layers model's artifacts (topology + float32 weights), as model.save would write them. */
async function artifactsOf(model: tf.LayersModel): Promise<tf.io.ModelArtifacts> {
  let captured: tf.io.ModelArtifacts | undefined;
  await model.save(
    tf.io.withSaveHandler(async (a) => {
      captured = a;
      return { modelArtifactsInfo: { dateSaved: new Date(0), modelTopologyType: 'JSON' } };
    }),
  );
  if (!captured) throw new Error('tfjs-float16: the model did not save');
  return captured;
}

/** float16 for the kernels of layers not in `keep`; everything else copied as it is. */
function float16Kernels(specs: tf.io.WeightsManifestEntry[], data: ArrayBuffer, keep: Set<string>) {
  const src = new Uint8Array(data);
  const out: tf.io.WeightsManifestEntry[] = [];
  const chunks: Uint8Array[] = [];
  let offset = 0;
  for (const spec of specs) {
    const size = spec.shape.reduce((a, b) => a * b, 1);
    if (spec.dtype !== 'float32' || spec.quantization)
      throw new Error(`tfjs-float16: weight ${spec.name} is ${spec.dtype}${spec.quantization ? ' (quantized)' : ''}`);
    const raw = src.slice(offset, offset + size * 4);
    offset += size * 4;
    const layer = spec.name.slice(0, spec.name.lastIndexOf('/'));
    if (!/kernel$/.test(spec.name) || keep.has(layer)) {
      out.push({ ...spec });
      chunks.push(raw);
      continue;
    }
    const values = new Float32Array(raw.buffer);
    const half = new Uint16Array(size);
    for (let i = 0; i < size; i++) half[i] = float32ToFloat16Bits(values[i]);
    out.push({ ...spec, quantization: { dtype: 'float16' } });
    chunks.push(new Uint8Array(half.buffer));
  }
  if (offset !== src.byteLength) throw new Error(`tfjs-float16: weight data is ${src.byteLength} bytes, the specs describe ${offset}`);
  return { specs: out, data: Buffer.concat(chunks) };
}

export async function writeTfjsFloat16(model: tf.LayersModel, graph: FusedGraph): Promise<ExportFile[]> {
  const a = await artifactsOf(model);
  const keep = new Set(graph.ops.filter((op) => keepKernelFloat32(op)).flatMap((op) => op.layers));
  const q = float16Kernels(a.weightSpecs ?? [], a.weightData as ArrayBuffer, keep);
  // generatedBy names the tfjs version; no dates or paths go in, so the same model gives the same bytes.
  const json = modelJsonText({ ...a, generatedBy: `TensorFlow.js tfjs-layers v${tf.version.tfjs}` }, q.specs);
  return [
    { path: `${DIR}/model.json`, bytes: new TextEncoder().encode(json) },
    { path: `${DIR}/weights.bin`, bytes: new Uint8Array(q.data) },
  ];
}

/** Loads the written model.json + weights.bin into tfjs and predicts the class probabilities. */
export async function tfjsFilesProbabilities(files: ExportFile[], inputs: PixelBatch, batch = 16): Promise<number[][]> {
  const byName = new Map(files.map((f) => [f.path.slice(DIR.length + 1), f.bytes]));
  const json = JSON.parse(new TextDecoder().decode(byName.get('model.json'))) as tf.io.ModelJSON;
  const artifacts = await artifactsFromModelJson(json, async (p) => {
    const b = byName.get(p);
    if (!b) throw new Error(`tfjs-float16: model.json names a weight file '${p}' that was not written`);
    return Buffer.from(b);
  });
  const model = await tf.loadLayersModel(tf.io.fromMemory(artifacts));
  try {
    const [n, h, w] = inputs.shape;
    const per = h * w * 3;
    const numClasses = (model.outputs[0].shape[1] as number) === 1 ? 2 : (model.outputs[0].shape[1] as number);
    const rows: number[][] = [];
    for (let s = 0; s < n; s += batch) {
      const e = Math.min(n, s + batch);
      const out = tf.tidy(
        () => model.predict(tf.tensor4d(Float32Array.from(inputs.pixels.subarray(s * per, e * per)), [e - s, h, w, 3])) as tf.Tensor,
      );
      rows.push(...toClassProbabilities((await out.data()) as Float32Array, numClasses));
      out.dispose();
    }
    return rows;
  } finally {
    model.dispose();
  }
}

registerWriter('tfjs-float16', {
  write: (graph, ctx) => {
    if (!ctx.model) throw new Error('tfjs-float16: the layers model is needed (WriteContext.model)');
    return writeTfjsFloat16(ctx.model, graph);
  },
  verify: tfjsFilesProbabilities,
  runtime: async () => `tfjs ${tf.version.tfjs} (${tf.getBackend()})`,
});
