// An onnxruntime-node session over ONNX bytes written by our exporter, as an InferenceEngine. No
// tfjs here: the boundary workers of the ort engine load this module and never tfjs
// (training/workers/worker-boundary.ts); writing the ONNX is core/engine/ort-engine.ts.

import { createRequire } from 'node:module';
import { loadOnnxRuntime } from '../export/onnx-runtime.js';
import type { EngineOutput, InferenceEngine, MixedOutput } from './engine.js';

const require = createRequire(import.meta.url);
let version: string | null | undefined;
/** onnxruntime-node's installed version (its package.json), or undefined when it is not installed. */
export function ortNodeVersion(): string | undefined {
  if (version === undefined) {
    try {
      version = (require('onnxruntime-node/package.json') as { version: string }).version;
    } catch {
      version = null;
    }
  }
  return version ?? undefined;
}

/** The graph output holding the float16 copy of `layer` (ort-engine.ts `withFloat16Outputs`). */
export const float16Name = (layer: string) => `${layer}/float16`;

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
    // The CPU arena and memory pattern stay on: turning either off, or use_device_allocator_for_initializers
    // or disable_prepacking, did not lower a 2-worker pool's peak RSS (without the arena it rose) nor speed it up.
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
  const v = ortNodeVersion() ?? 'unknown version';
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
