// TFLite export of a fused classifier graph: write, verify in TensorFlow Lite, fail on disagreement.
import { createHash } from 'node:crypto';
import type { FusedGraph } from '../../graph/fused-graph.js';
import { type CalibrationOptions, calibrateRanges } from './calibrate.js';
import { openTfliteRuntime, type TfliteRuntimeStatus } from './interpreter.js';
import { type TfliteVerification, type TfliteVerifyInputs, verifyTflite } from './verify.js';
import { labelsFile, type TfliteVariant, writeTflite } from './writer.js';

export { openTfliteRuntime, type TfliteRuntime, type TfliteRuntimeStatus } from './interpreter.js';
export { TFLITE_TOLERANCE, type TfliteVerification, type TfliteVerifyInputs, verifyTflite } from './verify.js';
export { labelsFile, type TfliteVariant, writeTflite } from './writer.js';

export interface TfliteExportOptions {
  classes: string[];
  /** int8: RGB pixels ([h*w*3] each, the input size) of the calibration images, a few hundred training images. */
  calibration?: readonly Uint8Array[];
  calibrationOptions?: CalibrationOptions;
  /** Inputs the export is checked on, with the float32 tfjs model's probabilities. */
  verify: TfliteVerifyInputs;
  /** An open runtime (share one across variants), or the reason there is none. Default: opened and closed here. */
  runtime?: TfliteRuntimeStatus;
  /** Extra facts for the model's `edgetune` metadata entry. */
  extra?: Record<string, unknown>;
}

export interface TfliteExport {
  variant: TfliteVariant;
  bytes: Uint8Array;
  sha256: string;
  /** The labels file (one class per line), also embedded in the model's metadata. */
  labels: string;
  verification: TfliteVerification;
  /** int8: the calibration that was used. */
  calibration?: { images: number; method: string };
}

/**
 * Writes the variant and verifies it in TensorFlow Lite's interpreter. Throws when the file
 * disagrees with the tfjs model beyond the variant's tolerance; when the interpreter is not available
 * here, the result says so (`verification.status === 'unavailable'`) and nothing is claimed.
 */
export async function exportTflite(graph: FusedGraph, variant: TfliteVariant, opts: TfliteExportOptions): Promise<TfliteExport> {
  let ranges: ReturnType<typeof calibrateRanges> | undefined;
  if (variant === 'int8') {
    if (!opts.calibration?.length) throw new Error('tflite-int8 export needs calibration images (--data with the training photos)');
    ranges = calibrateRanges(graph, opts.calibration, opts.calibrationOptions);
  }
  const bytes = writeTflite(graph, { variant, classes: opts.classes, ranges, extra: opts.extra });
  const status = opts.runtime ?? (await openTfliteRuntime());
  let verification: TfliteVerification;
  try {
    verification = await verifyTflite(bytes, variant, opts.verify, status.ok ? status.runtime : { unavailable: status.reason });
  } finally {
    if (!opts.runtime && status.ok) await status.runtime.close();
  }
  if (verification.status === 'failed')
    throw new Error(`tflite${variant === 'float32' ? '' : `-${variant}`} export rejected: ${verification.reason}`);
  return {
    variant,
    bytes,
    sha256: createHash('sha256').update(bytes).digest('hex'),
    labels: labelsFile(opts.classes),
    verification,
    ...(variant === 'int8'
      ? { calibration: { images: opts.calibration?.length ?? 0, method: opts.calibrationOptions?.method ?? 'minmax' } }
      : {}),
  };
}
