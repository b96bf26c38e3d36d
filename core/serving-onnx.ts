// The serving artifact, written ahead of time by training's export and by publishing: the fused
// graph of the weights a version serves, as ONNX (serving.onnx), and its manifest record with the
// probabilities onnxruntime must reproduce at load. Serving reads it through core/model-loader.ts
// without evaluating tfjs; this builder needs tfjs (it reads the layers model).
import { engineOnnx } from './engine/ort-engine.js';
import { HEAD } from './head-names.js';
import { SERVING_CHECK_IMAGES, type Serving, type Verification } from './manifest.js';
import type { LayersModel } from './tf.js';
import { sha256 } from './versioning.js';

export const SERVING_ONNX_FILE = 'serving.onnx';

/** The model's output, then the logits and pooled embedding when the head has them (calibration and open-set need them). */
export function servingOutputs(model: LayersModel): string[] {
  const output = model.outputLayers[0].name;
  const names = new Set(model.layers.map((l) => l.name));
  return names.has(HEAD.logits) && names.has(HEAD.pool) ? [output, HEAD.logits, HEAD.pool] : [output];
}

/**
 * serving.onnx for `model` (the weights as served) and its manifest record; undefined when
 * verification.json has no image to check it on. `probabilities` are `model`'s own rows on
 * verification.json's images (the callers have computed them already); the first ones become the
 * check onnxruntime must reproduce at load.
 */
export function buildServingOnnx(
  model: LayersModel,
  verification: Verification,
  probabilities: number[][],
  weights: Serving['onnx']['weights'],
): { bytes: Uint8Array; record: Serving } | undefined {
  const [n, h, w] = verification.shape;
  const k = Math.min(n, SERVING_CHECK_IMAGES);
  if (k === 0) return undefined;
  const [mh, mw, mc] = model.inputs[0].shape.slice(1);
  if (mh !== h || mw !== w || mc !== 3) {
    throw new Error(`verification.json holds ${h}x${w} images; the model takes [${mh}, ${mw}, ${mc}]`);
  }
  if (probabilities.length < k) throw new Error(`serving check: ${k} probability rows needed, got ${probabilities.length}`);
  const outputs = servingOutputs(model);
  const bytes = engineOnnx(model, outputs);
  return {
    bytes,
    record: {
      onnx: { file: SERVING_ONNX_FILE, bytes: bytes.byteLength, sha256: sha256(bytes), outputs, inputShape: [h, w, 3], weights },
      check: { images: k, probabilities: probabilities.slice(0, k) },
    },
  };
}
