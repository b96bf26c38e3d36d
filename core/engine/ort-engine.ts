// The onnxruntime engine: the model's fused graph (BatchNorm folded, ReLU6 as Clip), written as ONNX
// in memory by our exporter with the requested layers as outputs, run by onnxruntime-node's CPU
// provider. The weights are the same float32 values the WASM executor uses.

import { readFile } from 'node:fs/promises';
import { createRequire } from 'node:module';
import type { LayersModel } from '@tensorflow/tfjs';
import { onnxModelType, writeOnnx } from '../export/onnx.js';
import { loadOnnxRuntime } from '../export/onnx-runtime.js';
import { fusedGraph, subgraph } from '../graph/fused-graph.js';
import type { EngineOptions, EngineOutput, InferenceEngine, MixedOutput } from './engine.js';

const require = createRequire(import.meta.url);
let version: string | undefined;
async function ortVersion(): Promise<string> {
  if (!version) {
    try {
      const pkg = require.resolve('onnxruntime-node/package.json');
      version = (JSON.parse(await readFile(pkg, 'utf8')) as { version: string }).version;
    } catch {
      version = 'unknown version';
    }
  }
  return version;
}

/** The ONNX bytes of `model` with `outputs` as graph outputs (NHWC for feature maps). */
export function engineOnnx(model: LayersModel, outputs?: readonly string[]): Uint8Array {
  const outs = outputs ?? [model.outputLayers[0].name];
  const graph = subgraph(fusedGraph(model, { keep: outs }), { outputs: [...outs] });
  return writeOnnx(graph, { graphName: 'edgetune_engine' });
}

const FLOAT16 = 10;
const float16Name = (layer: string) => `${layer}/float16`;

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

/** An engine from ONNX bytes written by our exporter (input NHWC RGB 0..255, one image shape `inputShape`). */
export async function ortEngineFromOnnx(
  bytes: Uint8Array,
  inputShape: number[],
  threads = 1,
  outputs?: readonly string[],
): Promise<InferenceEngine> {
  const ort = await loadOnnxRuntime();
  const session = await ort.InferenceSession.create(bytes, {
    executionProviders: ['cpu'],
    graphOptimizationLevel: 'all',
    executionMode: 'sequential',
    intraOpNumThreads: threads,
    interOpNumThreads: 1,
    // Threads that spin between ops steal the core from the tfjs tail and the other worker.
    extra: { session: { intra_op: { allow_spinning: '0' }, inter_op: { allow_spinning: '0' } } },
  });
  const names = [...(outputs ?? session.outputNames.filter((n) => !n.endsWith('/float16')))];
  for (const n of names) if (!session.outputNames.includes(n)) throw new Error(`ort engine: the graph has no output '${n}'`);
  const input = session.inputNames[0];
  const outputShapes: Record<string, number[]> = {};
  const meta = session.outputMetadata as unknown as { name: string; isTensor: boolean; shape?: (number | string)[] }[] | undefined;
  for (const n of names) {
    const m = Array.isArray(meta) ? meta.find((o) => o.name === n) : undefined;
    outputShapes[n] = (m?.shape ?? []).slice(1).map((d) => (typeof d === 'number' ? d : -1));
  }
  const v = await ortVersion();
  let queue: Promise<unknown> = Promise.resolve();
  const runFetches = (pixels: Float32Array, n: number, only: readonly string[], float16: readonly string[]): Promise<MixedOutput[]> => {
    for (const l of only) {
      if (!outputShapes[l]) return Promise.reject(new Error(`ort engine: '${l}' is not one of its outputs (${names.join(', ')})`));
    }
    const half = new Set(float16);
    const fetchOf = (l: string) => (half.has(l) && session.outputNames.includes(float16Name(l)) ? float16Name(l) : l);
    // In session order: onnxruntime-node 1.23 keys fetched values by position in the session's
    // outputs (fetching only the second output returns it under the first one's name), so a value
    // is found under its own name, or else under the name at its position.
    const fetches = [...new Set(only.map(fetchOf))].sort((a, b) => session.outputNames.indexOf(a) - session.outputNames.indexOf(b));
    // One run at a time per session: concurrent runs would oversubscribe the threads we set.
    const p = queue.then(async () => {
      const x = new ort.Tensor('float32', pixels, [n, ...inputShape]);
      const res = await session.run({ [input]: x }, fetches);
      const keys = Object.keys(res);
      const named = fetches.every((f, i) => keys[i] === f);
      const byName = new Map(fetches.map((f, i) => [f, named ? res[f] : res[session.outputNames[i]]]));
      return only.map((l): MixedOutput => {
        const t = byName.get(fetchOf(l));
        if (!t) throw new Error(`ort engine: no value for '${l}'`);
        return { data: t.data as Float32Array | Uint16Array, dims: [...t.dims] };
      });
    });
    queue = p.catch(() => {});
    return p;
  };
  return {
    name: 'ort',
    description: `onnxruntime-node ${v} (CPU, ${threads} intra-op thread${threads === 1 ? '' : 's'})`,
    outputs: names,
    outputShapes,
    run(pixels, n, only = names) {
      return runFetches(pixels, n, only, []) as Promise<EngineOutput[]>;
    },
    ...(session.outputNames.some((o) => o.endsWith('/float16'))
      ? {
          runMixed: (pixels: Float32Array, n: number, only: readonly string[], float16: readonly string[]) =>
            runFetches(pixels, n, only, float16),
        }
      : {}),
    async dispose() {
      await queue;
      await session.release();
    },
  };
}
