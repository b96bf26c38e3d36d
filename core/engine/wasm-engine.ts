// The tfjs engine: the fused executor on whatever tfjs backend runs (WASM here, on Lambda@Edge and
// wherever onnxruntime does not load).
import type { LayersModel, Tensor } from '@tensorflow/tfjs';
import { createFastForward } from '../fast-forward.js';
import { tf } from '../tf.js';
import type { EngineOptions, EngineOutput, InferenceEngine } from './engine.js';

/**
 * Several outputs run the network once: a deeper layer continues from a shallower one's activations
 * when that is exactly the computation a forward from the input would do (same fused steps), else it
 * is computed from the input, so every output equals its single-layer run bit for bit.
 */
export function createWasmEngine(model: LayersModel, opts: EngineOptions = {}): InferenceEngine {
  const ff = createFastForward(model);
  const outputs = [...(opts.outputs ?? [ff.outputName])];
  const outputShapes: Record<string, number[]> = {};
  try {
    for (const l of outputs) outputShapes[l] = (model.getLayer(l).outputShape as number[]).slice(1);
  } catch (e) {
    ff.dispose();
    throw e;
  }
  const depth = new Map(ff.layerNames.map((n, i) => [n, i]));
  const chains = new Map<string, boolean>();
  const continues = (from: string, to: string) => {
    const key = `${from}>${to}`;
    let c = chains.get(key);
    if (c === undefined) {
      try {
        c = ff.describe({ to }).join('\n') === [...ff.describe({ to: from }), ...ff.describe({ from, to })].join('\n');
      } catch {
        c = false; // `to` also needs layers below `from` (a residual branch crosses it)
      }
      chains.set(key, c);
    }
    return c;
  };
  const [h, w, c] = model.inputs[0].shape.slice(1) as number[];
  const backend = tf.getBackend();
  return {
    name: 'wasm',
    description: `tfjs ${backend} (fused executor)`,
    outputs,
    outputShapes,
    async run(pixels, n, only = outputs) {
      for (const l of only) if (!outputShapes[l]) throw new Error(`wasm engine: '${l}' is not one of its outputs (${outputs.join(', ')})`);
      const order = only.map((l, k) => ({ l, k })).sort((a, b) => (depth.get(a.l) ?? 0) - (depth.get(b.l) ?? 0));
      const x = tf.tensor4d(pixels, [n, h, w, c]);
      const result: EngineOutput[] = new Array(only.length);
      let prev: { layer: string; y: Tensor } | undefined;
      try {
        for (const { l, k } of order) {
          const y = prev && continues(prev.layer, l) ? ff.forward(prev.y, { from: prev.layer, to: l }) : ff.forward(x, { to: l });
          prev?.y.dispose();
          prev = { layer: l, y };
          result[k] = { data: y.dataSync() as Float32Array, dims: [...y.shape] };
        }
      } finally {
        prev?.y.dispose();
        x.dispose();
      }
      return result;
    },
    async dispose() {
      ff.dispose();
    },
  };
}
