// The TFLite formats in the writer registry: tflite, tflite-float16, tflite-int8 (+ labels.txt beside each).
import type { FusedGraph } from '../../graph/fused-graph.js';
import { FORMATS } from '../formats.js';
import { type ExportFile, type PixelBatch, registerWriter, type WriteContext } from '../writers.js';
import { calibrateRanges } from './calibrate.js';
import { openTfliteRuntime } from './interpreter.js';
import { labelsFile, type TfliteVariant, writeTflite } from './writer.js';

/** At most this many calibration images are used (the first ones given: a few hundred suffice). */
export const MAX_CALIBRATION_IMAGES = 300;

function images(batch: PixelBatch, max = Number.POSITIVE_INFINITY): Uint8Array[] {
  const [n, h, w] = batch.shape;
  const per = h * w * 3;
  if (batch.pixels.length !== n * per) throw new Error(`tflite: ${batch.pixels.length} pixel bytes for shape [${batch.shape}]`);
  return Array.from({ length: Math.min(n, max) }, (_, i) => batch.pixels.subarray(i * per, (i + 1) * per));
}

let runtimeName: string | undefined;

/** Runs the model file in TensorFlow Lite (Chromium + tfjs-tflite's WASM build); throws, saying why, when that is not here. */
async function tfliteProbabilities(files: ExportFile[], inputs: PixelBatch, variant: TfliteVariant): Promise<number[][]> {
  const status = await openTfliteRuntime();
  if (!status.ok) throw new Error(`no TFLite interpreter here, so the TFLite export cannot be verified: ${status.reason}`);
  try {
    runtimeName = status.runtime.name;
    const px = images(inputs);
    const feed = variant === 'int8' ? px : px.map((p) => Float32Array.from(p));
    const r = await status.runtime.run(files[0].bytes, feed);
    return r.outputs.map((o) => Array.from(o));
  } finally {
    await status.runtime.close();
  }
}

function metadataFor(variant: TfliteVariant, ctx: WriteContext): Record<string, unknown> {
  const m: Record<string, unknown> = { ...ctx.metadata, 'edgetune.producer': ctx.producerVersion };
  // The int8 file's input is uint8 with the preprocessing as its quantization (see the `input` entry).
  if (variant === 'int8') {
    delete m['edgetune.input'];
    delete m['edgetune.preprocessing'];
  }
  return m;
}

export function registerTfliteWriters(): void {
  for (const [id, variant] of [
    ['tflite', 'float32'],
    ['tflite-float16', 'float16'],
    ['tflite-int8', 'int8'],
  ] as const) {
    registerWriter(id, {
      write(graph: FusedGraph, ctx: WriteContext): ExportFile[] {
        let ranges: ReturnType<typeof calibrateRanges> | undefined;
        if (variant === 'int8') {
          if (!ctx.calibration?.shape[0]) throw new Error(`format '${id}' needs calibration images: give --data <folder>`);
          ranges = calibrateRanges(graph, images(ctx.calibration, MAX_CALIBRATION_IMAGES));
        }
        const bytes = writeTflite(graph, { variant, classes: [...ctx.classes], ranges, extra: metadataFor(variant, ctx) });
        return [
          { path: FORMATS[id].file, bytes },
          { path: 'labels.txt', bytes: new TextEncoder().encode(labelsFile([...ctx.classes])) },
        ];
      },
      verify: (files, inputs) => tfliteProbabilities(files, inputs, variant),
      async runtime() {
        if (runtimeName) return runtimeName;
        const status = await openTfliteRuntime();
        if (!status.ok) return `TensorFlow Lite (unavailable: ${status.reason})`;
        runtimeName = status.runtime.name;
        await status.runtime.close();
        return runtimeName;
      },
    });
  }
}

registerTfliteWriters();
