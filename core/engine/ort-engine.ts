// The onnxruntime engine: the model's fused graph (BatchNorm folded, ReLU6 as Clip), written as ONNX
// in memory by our exporter with the requested layers as outputs, run by onnxruntime-node's CPU
// provider. The weights are the same float32 values the WASM executor uses.

import { readFile } from 'node:fs/promises';
import { createRequire } from 'node:module';
import type { LayersModel } from '@tensorflow/tfjs';
import { writeOnnx } from '../export/onnx.js';
import { loadOnnxRuntime } from '../export/onnx-runtime.js';
import { fusedGraph, subgraph } from '../graph/fused-graph.js';
import type { EngineOptions, EngineOutput, InferenceEngine } from './engine.js';

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

export async function createOrtEngine(model: LayersModel, opts: EngineOptions = {}): Promise<InferenceEngine> {
  const outputs = [...(opts.outputs ?? [model.outputLayers[0].name])];
  const bytes = engineOnnx(model, outputs);
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
  const names = [...(outputs ?? session.outputNames)];
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
  return {
    name: 'ort',
    description: `onnxruntime-node ${v} (CPU, ${threads} intra-op thread${threads === 1 ? '' : 's'})`,
    outputs: names,
    outputShapes,
    run(pixels, n, only = names) {
      for (const l of only) {
        if (!outputShapes[l]) return Promise.reject(new Error(`ort engine: '${l}' is not one of its outputs (${names.join(', ')})`));
      }
      // One run at a time per session: concurrent runs would oversubscribe the threads we set.
      const p = queue.then(async () => {
        const x = new ort.Tensor('float32', pixels, [n, ...inputShape]);
        // onnxruntime-node 1.23 names fetched values by position in the session's outputs (fetching
        // only the second output returns it under the first one's name): fetch a prefix of them.
        const last = Math.max(...only.map((l) => session.outputNames.indexOf(l)));
        const res = await session.run({ [input]: x }, session.outputNames.slice(0, last + 1));
        return only.map((name): EngineOutput => ({ data: res[name].data as Float32Array, dims: [...res[name].dims] }));
      });
      queue = p.catch(() => {});
      return p;
    },
    async dispose() {
      await queue;
      await session.release();
    },
  };
}
