// The writer registry: format id -> how to write the file(s) from the fused graph and how to run them
// in that format's own runtime. A format without a writer fails with "not built yet".
import type { FusedGraph } from '../graph/fused-graph.js';
import type { LayersModel } from '../tf.js';
import { keepKernelFloat32 } from './float16-weights.js';
import type { FormatId } from './formats.js';
import { writeOnnx } from './onnx.js';
import { loadOnnxRuntime, onnxProbabilities, onnxSession } from './onnx-runtime.js';

/** NHWC uint8 RGB images at the model's input size, back to back. */
export interface PixelBatch {
  pixels: Uint8Array;
  shape: [number, number, number, 3];
}

export interface WriteContext {
  classes: readonly string[];
  /** Stored in the file's metadata (ONNX metadata_props, TFLite metadata), in this order. */
  metadata: Record<string, string>;
  /** Calibration images (training images) for formats that need them (int8). */
  calibration?: PixelBatch;
  producerVersion: string;
  /** The layers model itself, for the tfjs formats (the others write from the fused graph). */
  model?: LayersModel;
}

export interface ExportFile {
  /** Path inside the output folder. */
  path: string;
  bytes: Uint8Array;
}

export interface FormatWriter {
  /** The export's files; the first is the model file a runtime opens. */
  write(graph: FusedGraph, ctx: WriteContext): ExportFile[] | Promise<ExportFile[]>;
  /** Class probability rows (label order) of the export for the given pixels, in its own runtime. */
  verify(files: ExportFile[], inputs: PixelBatch): Promise<number[][]>;
  /** The runtime and its version, for the export record. */
  runtime(): Promise<string>;
  /** Median single-image latency (ms) in that runtime on 1 thread, when the writer can measure it cheaply. */
  latency?(files: ExportFile[], image: PixelBatch): Promise<number>;
}

/** Runs taken for an export's latency figure (after 2 warm-up runs); the median is recorded. */
export const LATENCY_RUNS = 10;

const writers = new Map<FormatId, FormatWriter>();

export function registerWriter(id: FormatId, writer: FormatWriter): void {
  writers.set(id, writer);
}

export function hasWriter(id: FormatId): boolean {
  return writers.has(id);
}

export function writerFor(id: FormatId): FormatWriter {
  const w = writers.get(id);
  if (!w) {
    const note = id === 'tfjs' ? ' (the tfjs model is the model folder itself: model.json + weights.bin)' : '';
    throw new Error(`format '${id}' is not built yet as an export${note}; built: ${[...writers.keys()].join(', ')}`);
  }
  return w;
}

const onnxRuntimeName = async () => `onnxruntime-node ${(await loadOnnxRuntime()).env.versions.node ?? ''}`.trim();

for (const [id, file, weights] of [
  ['onnx', 'model.onnx', 'float32'],
  ['onnx-float16', 'model-float16.onnx', 'float16'],
] as const) {
  registerWriter(id, {
    write: (graph, ctx) => [
      {
        path: file,
        bytes: writeOnnx(graph, {
          classes: ctx.classes,
          metadata: ctx.metadata,
          weights,
          producerVersion: ctx.producerVersion,
          float32Weights: (_id, op) => keepKernelFloat32(op),
        }),
      },
    ],
    verify: (files, inputs) => onnxProbabilities(files[0].bytes, inputs.pixels, inputs.shape),
    runtime: onnxRuntimeName,
    async latency(files, image) {
      const s = await onnxSession(files[0].bytes, { threads: 1 });
      try {
        const x = Float32Array.from(image.pixels.subarray(0, image.shape[1] * image.shape[2] * 3));
        const ms: number[] = [];
        for (let i = 0; i < LATENCY_RUNS + 2; i++) {
          const t = performance.now();
          await s.run(x, [1, image.shape[1], image.shape[2], 3]);
          if (i >= 2) ms.push(performance.now() - t);
        }
        return ms.sort((a, b) => a - b)[Math.floor(ms.length / 2)];
      } finally {
        await s.release();
      }
    },
  });
}
