// The boundary forward pass of one thread: decoded pixels (+ augmentation draws) -> activations at
// the freeze boundary. This module is the tfjs side (the base built from weights, the fused WASM
// executor, the ONNX written from it); the jobs and the engine-independent runner are
// boundary-job.ts, which the ort workers load without tfjs. Workers of the pool each run one
// runner; it also runs in-process (workers: 0, tests, single-core machines).
import type { LayersModel } from '@tensorflow/tfjs';
import type { EngineName, InferenceEngine } from '../../core/engine/engine.js';
import { engineOnnx, withFloat16Outputs } from '../../core/engine/ort-engine.js';
import { createWasmEngine } from '../../core/engine/wasm-engine.js';
import { buildMobileNetV2 } from '../../core/mobilenet-v2.js';
import { applyBaseWeights } from '../../core/weights/apply.js';
import { decodeTfjsWeights } from '../../core/weights/tfjs-source.js';
import type { WeightArray } from '../../core/weights/types.js';
import {
  type BoundaryModelOptions,
  type BoundaryRunner,
  type BoundaryWeights,
  createOrtBoundaryRunner,
  runnerLayers,
  runnerOver,
} from './boundary-job.js';

export * from './boundary-job.js';

/** The base weights of a serialized model (tfjs weight specs + data), keyed `<layer>/<weight>`. */
export function namedWeights(weights: BoundaryWeights): Map<string, WeightArray> {
  return decodeTfjsWeights(new Uint8Array(weights.weightData), weights.weightSpecs);
}

/** Builds the Keras base for alpha/inputSize and sets its weights by name from `weights`. */
export function baseFromWeights(weights: BoundaryWeights, opts: BoundaryModelOptions): LayersModel {
  const base = buildMobileNetV2({ alpha: opts.alpha, inputSize: opts.inputSize });
  try {
    applyBaseWeights(base, namedWeights(weights), 'the boundary weights');
  } catch (e) {
    base.dispose();
    throw e;
  }
  return base;
}

/**
 * In-thread boundary forward on the tfjs fused executor; `batchSize` views go through the network at
 * once. A job asking for several layers runs the network once: a deeper layer continues from a
 * shallower one's activations when that is exactly the computation a forward from the input would do
 * (same fused steps), else it is computed from the input, so every output equals its single-layer
 * run bit for bit (core/engine/wasm-engine.ts).
 */
export function createBoundaryRunner(weights: BoundaryWeights, opts: BoundaryModelOptions & { batchSize?: number }): BoundaryRunner {
  const layers = runnerLayers(opts);
  const model = baseFromWeights(weights, opts);
  let engine: InferenceEngine;
  try {
    engine = createWasmEngine(model, { outputs: layers });
  } finally {
    // The executor holds its own folded weights: the layers model is no longer needed.
    model.dispose();
  }
  return runnerOver(engine, opts);
}

/**
 * The ONNX of the frozen layers for the ort engine: the base's fused graph with every layer a job may
 * ask for as an output, each with a float16 copy (core/engine/ort-engine.ts). Written once by the
 * pool and sent to its workers, so every worker (and the in-thread runner) runs the same bytes.
 */
export function boundaryOnnx(weights: BoundaryWeights, opts: BoundaryModelOptions): Uint8Array {
  const layers = runnerLayers(opts);
  const model = baseFromWeights(weights, opts);
  try {
    return withFloat16Outputs(engineOnnx(model, layers), layers);
  } finally {
    model.dispose();
  }
}

/** The boundary runner on `engine` (wasm or ort, core/engine); onnxruntime runs `threads` intra-op threads. */
export async function createEngineBoundaryRunner(
  weights: BoundaryWeights,
  opts: BoundaryModelOptions & { batchSize?: number; engine: EngineName; threads?: number },
): Promise<BoundaryRunner> {
  if (opts.engine === 'wasm') return createBoundaryRunner(weights, opts);
  return createOrtBoundaryRunner(boundaryOnnx(weights, opts), opts);
}
