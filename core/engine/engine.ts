// The inference engine seam: a forward pass from NHWC RGB 0..255 pixels to named layer outputs of
// a tfjs layers model, run either by tfjs' fused WASM executor (core/fast-forward.ts) or by
// onnxruntime-node on the CPU (the fused graph written as ONNX by core/export/onnx.ts). Training's
// frozen-layer workers and serving on Node use it; Lambda@Edge stays on WASM.
import type { LayersModel } from '@tensorflow/tfjs';
import { edgetuneConfig } from '../config.js';

export type EngineName = 'wasm' | 'ort';
export type EnginePreference = EngineName | 'auto';

export interface EngineOutput {
  /** NHWC (rank-4 layers) or [batch, features], float32. */
  data: Float32Array;
  dims: number[];
}

/** An output of `runMixed`: float32, or float16 bit patterns (round to nearest even). */
export interface MixedOutput {
  data: Float32Array | Uint16Array;
  dims: number[];
}

export interface InferenceEngine {
  readonly name: EngineName;
  /** For logs and manifests, e.g. `onnxruntime-node 1.23.2 (CPU, 1 intra-op thread)`. */
  readonly description: string;
  /** Layer names returned by run(), in order. */
  readonly outputs: readonly string[];
  /** [h, w, c] (or [features]) of each output without the batch dimension. */
  readonly outputShapes: Record<string, number[]>;
  /**
   * Runs `n` images ([n, size, size, 3] RGB 0..255 float32, back to back); one result per layer of
   * `only` (default every output), in that order. Layers not asked for are not computed.
   */
  run(pixels: Float32Array, n: number, only?: readonly string[]): Promise<EngineOutput[]>;
  /**
   * `run`, with the layers in `float16` returned as float16 bit patterns (Uint16Array) converted in
   * the engine's own graph. Only on engines created with `float16Outputs` that can (ort: a Cast).
   */
  runMixed?(pixels: Float32Array, n: number, only: readonly string[], float16: readonly string[]): Promise<MixedOutput[]>;
  dispose(): Promise<void>;
}

export interface EngineOptions {
  /** Layers to return; default the model's output. */
  outputs?: readonly string[];
  /** Intra-op threads of onnxruntime (ignored by WASM, whose threads are the tfjs backend's). Default 1. */
  threads?: number;
  /** Offer `runMixed` where the engine can convert to float16 itself (ort adds a Cast per output). */
  float16Outputs?: boolean;
}

/**
 * The engine preference: `--engine` / EDGETUNE_ENGINE, else `fallback` (wasm; training's frozen
 * layers pass auto).
 */
export function enginePreference(explicit?: EnginePreference, fallback: EnginePreference = 'wasm'): EnginePreference {
  return explicit ?? edgetuneConfig().EDGETUNE_ENGINE ?? fallback;
}

let ortProbe: Promise<string | undefined> | undefined;
/** Why onnxruntime-node cannot run here, or undefined when it loads. */
export function ortUnavailable(): Promise<string | undefined> {
  ortProbe ??= import('../export/onnx-runtime.js')
    .then((m) => m.loadOnnxRuntime())
    .then(
      () => undefined,
      (e: Error) => e.message,
    );
  return ortProbe;
}

/** The engine a preference resolves to: `auto` is ort when onnxruntime-node loads, else wasm; `ort` fails when it does not. */
export async function resolveEngine(pref: EnginePreference = enginePreference()): Promise<{ name: EngineName; reason?: string }> {
  if (pref === 'wasm') return { name: 'wasm' };
  const why = await ortUnavailable();
  if (!why) return { name: 'ort' };
  if (pref === 'ort') throw new Error(`engine 'ort' requested but ${why}`);
  return { name: 'wasm', reason: why };
}

/**
 * An engine for `model` (which may be disposed once this resolves: both implementations hold their
 * own folded weights). The tfjs backend must already be initialised for the wasm engine.
 */
export async function createEngine(model: LayersModel, name: EngineName, opts: EngineOptions = {}): Promise<InferenceEngine> {
  if (name === 'ort') {
    const { createOrtEngine } = await import('./ort-engine.js');
    return createOrtEngine(model, opts);
  }
  const { createWasmEngine } = await import('./wasm-engine.js');
  return createWasmEngine(model, opts);
}
