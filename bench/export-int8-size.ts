// npm run bench:export-int8-size [-- --alpha 1.0 --size 224]
// Where the bytes of a tflite-int8 file go: int8 kernels, int32 biases, the per-channel
// quantization parameters (float32 scales + int64 zero points, for kernels and biases), other
// buffers, and the flatbuffer's own structure (tensors, names, operators, alignment padding).
// A random-weight classifier with BatchNorm statistics set from data: the sizes do not depend on the values.
import * as flatbuffers from 'flatbuffers';
import { initBackend } from '../core/backend.js';
import { buildClassifier } from '../core/classifier.js';
import { calibrateRanges } from '../core/export/tflite/calibrate.js';
import { Model } from '../core/export/tflite/schema/generated/tflite/model.js';
import { TensorType } from '../core/export/tflite/schema/generated/tflite/tensor-type.js';
import { writeTflite } from '../core/export/tflite/writer.js';
import { fusedGraph } from '../core/graph/fused-graph.js';
import { randomizeBatchNorm } from '../test/helpers/fast-forward-fixtures.js';

const args = process.argv.slice(2);
const opt = (n: string, d: string) => {
  const i = args.indexOf(`--${n}`);
  return i >= 0 ? args[i + 1] : d;
};
const alpha = Number(opt('alpha', '1.0'));
const size = Number(opt('size', '224'));
await initBackend('wasm', () => {});
const model = buildClassifier({ alpha, inputSize: size, numClasses: 2, seed: 1 });
randomizeBatchNorm(model, 2);
const graph = fusedGraph(model);
const img = new Uint8Array(size * size * 3).map((_, i) => (i * 37) % 256);
const ranges = calibrateRanges(graph, [img]);
const f32 = writeTflite(graph, { variant: 'float32', classes: ['a', 'b'] });
const bytes = writeTflite(graph, { variant: 'int8', classes: ['a', 'b'], ranges });
const m = Model.getRootAsModel(new flatbuffers.ByteBuffer(bytes));
const sg = m.subgraphs(0)!;
const by: Record<string, number> = {};
const add = (k: string, n: number) => {
  by[k] = (by[k] ?? 0) + n;
};
let channels = 0;
for (let i = 0; i < sg.tensorsLength(); i++) {
  const t = sg.tensors(i)!;
  const buf = m.buffers(t.buffer())!;
  const n = buf.dataLength();
  const q = t.quantization();
  const kind =
    n === 0
      ? 'activation'
      : t.type() === TensorType.INT8
        ? 'int8 kernels'
        : t.type() === TensorType.INT32
          ? 'int32 biases / shapes'
          : `other buffers (${TensorType[t.type()]})`;
  if (n) add(kind, n);
  if (q) {
    add('quantization: float32 scales', q.scaleLength() * 4);
    add('quantization: int64 zero points', q.zeroPointLength() * 8);
    if (q.scaleLength() > 1) channels += q.scaleLength();
  }
  add('tensor names', (t.name() ?? '').length);
}
const accounted = Object.values(by).reduce((a, b) => a + b, 0) - (by.activation ?? 0);
console.log(
  `alpha ${alpha} ${size}x${size}: tflite float32 ${f32.byteLength} bytes, int8 ${bytes.byteLength} bytes (${(f32.byteLength / bytes.byteLength).toFixed(2)}x smaller)`,
);
console.log('| part | bytes | share of the int8 file |');
console.log('| --- | --- | --- |');
for (const [k, v] of Object.entries(by).sort((a, b) => b[1] - a[1])) {
  if (k !== 'activation') console.log(`| ${k} | ${v} | ${((100 * v) / bytes.byteLength).toFixed(1)}% |`);
}
console.log(
  `| flatbuffer structure, metadata, alignment (rest) | ${bytes.byteLength - accounted} | ${((100 * (bytes.byteLength - accounted)) / bytes.byteLength).toFixed(1)}% |`,
);
console.log(`per-channel parameter entries: ${channels} (kernels and biases), ${channels * 12} bytes of scale + zero point`);
console.log(`int8 kernels alone vs the float32 file: ${(f32.byteLength / (by['int8 kernels'] ?? 1)).toFixed(2)}x`);
model.dispose();
