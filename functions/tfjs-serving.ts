// The tfjs side of serving, imported only when a version is served from its layers model (no
// serving.onnx, Lambda@Edge's WASM, or a fallback): the fused WASM executor or model.predict, and
// onnxruntime on the graph converted at load. Serving from serving.onnx never evaluates this module.
import type { LayersModel, Tensor } from '@tensorflow/tfjs';
import { HEAD, toClassProbabilities } from '../core/classifier.js';
import { edgetuneConfig } from '../core/config.js';
import { createEngine, type EnginePreference, type InferenceEngine, resolveEngine } from '../core/engine/engine.js';
import { createFastForward } from '../core/fast-forward.js';
import { SERVING_CHECK_IMAGES, type Verification } from '../core/manifest.js';
import { maxAbsDiff } from '../core/probability-rows.js';
import { tf } from '../core/tf.js';
import {
  ORT_FEATURE_TOLERANCE,
  ORT_SERVING_TOLERANCE,
  ortPredictors,
  type Predict,
  type PredictAll,
  type ServingEngine,
  servingThreads,
} from './model-holder.js';

/** `predict` over a tfjs forward. */
export function tfjsPredict(forward: (x: Tensor) => Tensor, size: number): Predict {
  return async (pixels, n) => {
    const out = tf.tidy(() => forward(tf.tensor4d(pixels, [n, size, size, 3])));
    try {
      return (await out.data()) as Float32Array;
    } finally {
      out.dispose();
    }
  };
}

/** `predictAll` over a tfjs forward with the three outputs. */
export function tfjsPredictAll(forwardAll: (x: Tensor) => Tensor[], size: number): PredictAll {
  return async (pixels, n) => {
    const outs = tf.tidy(() => forwardAll(tf.tensor4d(pixels, [n, size, size, 3])));
    try {
      const [p, z, e] = (await Promise.all(outs.map((o) => o.data()))) as Float32Array[];
      return [p, z, e];
    } finally {
      tf.dispose(outs);
    }
  };
}

/** The tfjs forward passes of a served model. */
export interface TfjsForward {
  /** [N,S,S,3] RGB 0..255 -> the model's output: the fused executor when it reproduces model.predict. */
  forward: (x: Tensor) => Tensor;
  /** [probabilities, logits, pooled embedding] in one pass, when the graph has those layers. */
  forwardAll?: (x: Tensor) => Tensor[];
  engine: 'fused' | 'layers';
  runtime: string;
  dispose: () => void;
}

/**
 * Uses core/fast-forward (BatchNorm folded into convs, ReLU6 fused: ~2-4x faster on WASM) when it
 * builds for this graph and reproduces model.predict on a random input; else model.predict.
 * EDGETUNE_FAST_FORWARD=0 turns it off.
 */
export function chooseEngine(model: LayersModel, size: number, warn: (msg: string, fields: Record<string, unknown>) => void): TfjsForward {
  const runtime = `tfjs ${tf.getBackend()}`;
  const heads = hasHeadLayers(model);
  const multi = heads
    ? tf.model({
        inputs: model.inputs,
        outputs: [
          model.outputs[0],
          model.getLayer(HEAD.logits).output as tf.SymbolicTensor,
          model.getLayer(HEAD.pool).output as tf.SymbolicTensor,
        ],
      })
    : undefined;
  const layers = {
    forward: (x: Tensor) => model.predict(x) as Tensor,
    ...(multi ? { forwardAll: (x: Tensor) => multi.predict(x) as Tensor[] } : {}),
    engine: 'layers' as const,
    runtime,
    dispose: () => model.dispose(),
  };
  if (edgetuneConfig().EDGETUNE_FAST_FORWARD === '0') return layers;
  let ff: ReturnType<typeof createFastForward> | undefined;
  try {
    ff = createFastForward(model);
    const fused = ff;
    // Doubles as the warm-up of both paths (the caller's warm-up then finds the kernels ready).
    const diff = tf.tidy(() => {
      const x = tf.randomUniform([1, size, size, 3], 0, 255, 'float32', 7);
      return tf.max(tf.abs(tf.sub(model.predict(x) as Tensor, fused.forward(x)))).dataSync()[0];
    });
    if (!(diff <= 1e-3)) throw new Error(`fused output differs from model.predict by ${diff}`);
    const outputs = [fused.outputName, HEAD.logits, HEAD.pool];
    return {
      forward: (x) => fused.forward(x),
      ...(heads ? { forwardAll: (x: Tensor) => fused.forwardMany(x, { to: outputs }) } : {}),
      engine: 'fused',
      runtime,
      dispose: () => {
        fused.dispose();
        model.dispose();
      },
    };
  } catch (e) {
    ff?.dispose();
    warn('fused executor not used; serving with model.predict', { error: (e as Error).message });
    return layers;
  }
}

/** Serving on tfjs: the fused executor (or model.predict), warmed up. */
export function tfjsServing(
  model: LayersModel,
  size: number,
  needsAll: boolean,
  warn: (msg: string, fields: Record<string, unknown>) => void,
): ServingEngine {
  const tfjs = chooseEngine(model, size, warn);
  warmUp(tfjs.forward, size);
  const forwardAll = needsAll ? tfjs.forwardAll : undefined;
  if (forwardAll) warmUp((x) => forwardAll(x)[0], size);
  return {
    predict: tfjsPredict(tfjs.forward, size),
    ...(forwardAll ? { predictAll: tfjsPredictAll(forwardAll, size) } : {}),
    engine: tfjs.engine,
    runtime: tfjs.runtime,
    dispose: tfjs.dispose,
  };
}

/**
 * Serving on onnxruntime, or undefined when the preference is wasm or onnxruntime cannot serve this
 * model (said with `warn`; the caller then serves on tfjs). The fused graph is converted to ONNX at
 * load, in memory, with the logits and pooled embedding as extra outputs when scoring needs them,
 * checked against model.predict (tfjs) on a seeded input and warmed up. The tfjs fused executor is
 * not built on this path: nothing would run it.
 */
export async function ortServing(
  model: LayersModel,
  size: number,
  needsAll: boolean,
  pref: EnginePreference,
  warn: (msg: string, fields: Record<string, unknown>) => void,
  verification?: Verification,
): Promise<ServingEngine | undefined> {
  let chosen: Awaited<ReturnType<typeof resolveEngine>>;
  try {
    chosen = await resolveEngine(pref);
  } catch (e) {
    warn('onnxruntime requested but not available; serving on tfjs', { error: (e as Error).message });
    return undefined;
  }
  if (chosen.name === 'wasm') return undefined;
  const all = needsAll && hasHeadLayers(model);
  const output = model.outputLayers[0].name;
  const outputs = all ? [output, HEAD.logits, HEAD.pool] : [output];
  let engine: InferenceEngine | undefined;
  try {
    const threads = servingThreads();
    const t0 = performance.now();
    engine = await createEngine(model, 'ort', { threads, outputs });
    const ort = engine;
    const t1 = performance.now();
    const [vn, vh, vw] = verification?.shape ?? [0];
    const sameShape = !!verification && vn > 0 && vh === size && vw === size && verification.probabilities.length === vn;
    let t2: number;
    let checkedAgainst: string;
    if (sameShape && verification) {
      // verification.json's probabilities came from these very weights (the loader only gives it
      // then): real photos, and no tfjs pass, whose first run through the layers model is slow.
      // Two of its photos: each one costs a full-size inference here, at start-up.
      const k = Math.min(vn, SERVING_CHECK_IMAGES);
      const pixels = Float32Array.from(Buffer.from(verification.pixels, 'base64').subarray(0, k * size * size * 3));
      t2 = performance.now();
      const [probs] = await ort.run(pixels, k, [output]);
      const diff = maxAbsDiff(
        toClassProbabilities(probs.data, verification.probabilities[0].length),
        verification.probabilities.slice(0, k),
      );
      if (!(diff <= ORT_SERVING_TOLERANCE)) throw new Error(`onnxruntime's probabilities differ from verification.json's by ${diff}`);
      checkedAgainst = `verification.json (${k} images), max |dp| ${diff.toExponential(2)}`;
    } else {
      // One seeded image: the reference pass through the unfused layers model is the check's cost.
      const x = tf.randomUniform([1, size, size, 3], 0, 255, 'float32', 11);
      const pixels = x.dataSync() as Float32Array;
      const reference = all
        ? tf.model({ inputs: model.inputs, outputs: outputs.map((n) => model.getLayer(n).output as tf.SymbolicTensor) })
        : model;
      const ref = tf.tidy(() => {
        const y = reference.predict(x);
        return (Array.isArray(y) ? y : [y]).map((t) => t.dataSync() as Float32Array);
      });
      x.dispose();
      t2 = performance.now();
      const got = await ort.run(pixels, 1);
      let worst = 0;
      ref.forEach((r, k) => {
        let diff = 0;
        let scale = 1;
        for (let i = 0; i < r.length; i++) {
          diff = Math.max(diff, Math.abs(r[i] - got[k].data[i]));
          scale = Math.max(scale, Math.abs(r[i]));
        }
        const limit = k === 0 ? ORT_SERVING_TOLERANCE : ORT_FEATURE_TOLERANCE * scale;
        if (!(diff <= limit)) throw new Error(`onnxruntime's '${outputs[k]}' differs from tfjs by ${diff} (limit ${limit})`);
        worst = Math.max(worst, diff);
      });
      checkedAgainst = `tfjs model.predict (1 seeded image, ${outputs.length} outputs), max |d| ${worst.toExponential(2)}`;
    }
    const t3 = performance.now();
    await ort.run(new Float32Array(size * size * 3), 1);
    const ms = (a: number, b: number) => Math.round(b - a);
    return {
      setupMs: { convertAndSession: ms(t0, t1), reference: ms(t1, t2), check: ms(t2, t3), warmUp: ms(t3, performance.now()) },
      checkedAgainst,
      ...ortPredictors(ort, output, all),
      engine: 'fused',
      runtime: `${ort.description}, converted at load from the fused graph`,
      dispose: () => {
        void ort.dispose();
        model.dispose();
      },
    };
  } catch (e) {
    if (engine) await engine.dispose();
    warn('onnxruntime not used; serving on tfjs', { error: (e as Error).message });
    return undefined;
  }
}

/** One prediction at load, so the first request does not pay for WASM kernel setup. */
export function warmUp(forward: (x: Tensor) => Tensor, size: number): void {
  tf.tidy(() => {
    forward(tf.zeros([1, size, size, 3])).dataSync();
  });
}

function hasHeadLayers(model: LayersModel): boolean {
  const names = new Set(model.layers.map((l) => l.name));
  return names.has(HEAD.logits) && names.has(HEAD.pool);
}
