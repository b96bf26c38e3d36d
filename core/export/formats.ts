// The one list of model file formats (CLI `--format`/`--export`, exports.json, later publish and the API).
// The tfjs ids name the layers model itself (`tfjs`) and its float16-weight variant; publish's
// `--quantize` keeps its own meaning (the weights of the tfjs files it uploads).
import { z } from 'zod';

export const FORMAT_IDS = ['tfjs', 'tfjs-float16', 'onnx', 'onnx-float16', 'tflite', 'tflite-float16', 'tflite-int8'] as const;
export const FormatIdSchema = z.enum(FORMAT_IDS);
export type FormatId = z.infer<typeof FormatIdSchema>;

export interface FormatInfo {
  id: FormatId;
  /** File name inside the model folder (for tfjs, the model.json of a folder with its weights). */
  file: string;
  mediaType: string;
  /** The runtime the export is verified in. */
  runtime: string;
  weights: 'float32' | 'float16' | 'int8';
  /** int8 needs calibration images (`--data`, or the training images at `train --export`). */
  needsCalibration: boolean;
  /** Largest allowed |probability difference| to the float32 tfjs model; undefined: top-1 agreement and accuracy are reported instead. */
  tolerance?: number;
}

export const FORMATS: Record<FormatId, FormatInfo> = {
  tfjs: {
    id: 'tfjs',
    file: 'model.json',
    mediaType: 'application/json',
    runtime: 'tfjs',
    weights: 'float32',
    needsCalibration: false,
    tolerance: 1e-4,
  },
  'tfjs-float16': {
    id: 'tfjs-float16',
    file: 'tfjs-float16/model.json',
    mediaType: 'application/json',
    runtime: 'tfjs',
    weights: 'float16',
    needsCalibration: false,
    tolerance: 1e-2,
  },
  onnx: {
    id: 'onnx',
    file: 'model.onnx',
    mediaType: 'application/octet-stream',
    runtime: 'onnxruntime-node',
    weights: 'float32',
    needsCalibration: false,
    tolerance: 1e-4,
  },
  'onnx-float16': {
    id: 'onnx-float16',
    file: 'model-float16.onnx',
    mediaType: 'application/octet-stream',
    runtime: 'onnxruntime-node',
    weights: 'float16',
    needsCalibration: false,
    tolerance: 1e-2,
  },
  tflite: {
    id: 'tflite',
    file: 'model.tflite',
    mediaType: 'application/octet-stream',
    runtime: 'tflite',
    weights: 'float32',
    needsCalibration: false,
    tolerance: 1e-4,
  },
  'tflite-float16': {
    id: 'tflite-float16',
    file: 'model-float16.tflite',
    mediaType: 'application/octet-stream',
    runtime: 'tflite',
    weights: 'float16',
    needsCalibration: false,
    tolerance: 1e-2,
  },
  'tflite-int8': {
    id: 'tflite-int8',
    file: 'model-int8.tflite',
    mediaType: 'application/octet-stream',
    runtime: 'tflite',
    weights: 'int8',
    needsCalibration: true,
  },
};

/** `onnx,onnx-float16` -> ids, in the given order without repeats; unknown ids throw, listing the known ones. */
export function parseFormats(list: string): FormatId[] {
  const ids = list
    .split(',')
    .map((s) => s.trim())
    .filter(Boolean);
  if (ids.length === 0) throw new Error(`no format given; formats: ${FORMAT_IDS.join(', ')}`);
  const bad = ids.filter((i) => !FormatIdSchema.safeParse(i).success);
  if (bad.length) throw new Error(`unknown format ${bad.map((b) => `'${b}'`).join(', ')}; formats: ${FORMAT_IDS.join(', ')}`);
  return [...new Set(ids as FormatId[])];
}
