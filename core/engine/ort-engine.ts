// The onnxruntime engine: the model's fused graph (BatchNorm folded, ReLU6 as Clip), written as ONNX
// in memory by our exporter with the requested layers as outputs, run by onnxruntime-node's CPU
// provider. The weights are the same float32 values the WASM executor uses.

import type { LayersModel } from '@tensorflow/tfjs';
import { onnxModelType, writeOnnx } from '../export/onnx.js';
import { fusedGraph, subgraph } from '../graph/fused-graph.js';
import type { EngineOptions, InferenceEngine } from './engine.js';
import { float16Name, ortEngineFromOnnx } from './ort-session.js';

export { ortEngineFromOnnx } from './ort-session.js';

/**
 * The ONNX bytes of `model` with `outputs` as graph outputs (NHWC for feature maps), from the model
 * input or from the layer `from` (its activations, NHWC, become the graph input).
 */
export function engineOnnx(model: LayersModel, outputs?: readonly string[], from?: string): Uint8Array {
  const outs = outputs ?? [model.outputLayers[0].name];
  const keep = from ? [...outs, from] : outs;
  const graph = subgraph(fusedGraph(model, { keep }), { outputs: [...outs], ...(from ? { from } : {}) });
  return writeOnnx(graph, { graphName: 'edgetune_engine' });
}

const FLOAT16 = 10;

/**
 * `bytes` with a float16 copy of each of `layers` as a further graph output (`<layer>/float16`, a
 * Cast): onnxruntime converts with its own kernel and hands back half the bytes.
 */
export function withFloat16Outputs(bytes: Uint8Array, layers: readonly string[]): Uint8Array {
  const type = onnxModelType();
  type ValueInfo = { name: string; type: { tensor_type: { elem_type: number } } };
  // The decoded message is encoded again as is, with plain objects for what is added (as writeOnnx
  // encodes): no toObject / fromObject copy of every initializer.
  const m = type.decode(bytes) as unknown as { graph: { node: unknown[]; output: ValueInfo[] } };
  for (const layer of layers) {
    const out = m.graph.output.find((o) => o.name === layer);
    if (!out) throw new Error(`ort engine: the graph has no output '${layer}'`);
    m.graph.node.push({
      name: float16Name(layer),
      op_type: 'Cast',
      input: [layer],
      output: [float16Name(layer)],
      attribute: [{ name: 'to', type: 2, i: FLOAT16 }],
    });
    m.graph.output.push({ ...out, name: float16Name(layer), type: { tensor_type: { ...out.type.tensor_type, elem_type: FLOAT16 } } });
  }
  return type.encode(m).finish();
}

export async function createOrtEngine(model: LayersModel, opts: EngineOptions = {}): Promise<InferenceEngine> {
  const outputs = [...(opts.outputs ?? [model.outputLayers[0].name])];
  let bytes = engineOnnx(model, outputs);
  if (opts.float16Outputs) bytes = withFloat16Outputs(bytes, outputs);
  return ortEngineFromOnnx(bytes, model.inputs[0].shape.slice(1) as number[], opts.threads, outputs);
}
