// Worker thread of the boundary pool: its own tfjs + WASM instance running a BoundaryRunner.
// Started through worker-entry.mjs, which registers tsx so this TypeScript file loads anywhere.
import { workerData } from 'node:worker_threads';
import { describeBackend, initBackend } from '../../core/backend.js';
import type { EngineName } from '../../core/engine/engine.js';
import type { BoundaryDtype, BoundaryJob, BoundaryModelOptions, BoundaryWeights, LayerOutput } from './boundary-runner.js';
import { createBoundaryRunner, createEngineBoundaryRunner, outputBuffers } from './boundary-runner.js';
import { serveWorker } from './worker-channel.js';

export interface WorkerInit extends BoundaryModelOptions {
  weights: BoundaryWeights;
  batchSize?: number;
  backend?: 'wasm' | 'cpu' | 'auto';
  /** Engine of the activations (resolved by the pool); default wasm. */
  engine?: EngineName;
  /** onnxruntime intra-op threads of this worker. */
  engineThreads?: number;
}

export type WorkerRequest = { type: 'job'; id: number; job: BoundaryJob; dtype: BoundaryDtype } | { type: 'close' };

export type WorkerReply =
  | { type: 'ready'; backend: string; rowShape: [number, number, number]; rowShapes: Record<string, [number, number, number]> }
  | {
      type: 'result';
      id: number;
      data: Uint16Array | Float32Array;
      dtype: BoundaryDtype;
      shape: [number, number, number, number];
      outputs: LayerOutput[];
      ms: number;
    }
  | { type: 'error'; id?: number; message: string };

await serveWorker<WorkerRequest>(async () => {
  const init = workerData as WorkerInit;
  // One XNNPACK thread per worker: the pool itself is the parallelism. (The ort engine still builds
  // the base in tfjs to read the weights.)
  const info = await initBackend(init.backend === 'cpu' ? 'cpu' : 'wasm', () => {}, { wasmThreads: 1 });
  const engine = init.engine ?? 'wasm';
  const runner =
    engine === 'wasm'
      ? createBoundaryRunner(init.weights, init)
      : await createEngineBoundaryRunner(init.weights, { ...init, engine, threads: init.engineThreads });
  return {
    ready: {
      type: 'ready',
      backend: engine === 'wasm' ? describeBackend(info) : runner.engine,
      rowShape: runner.rowShape,
      rowShapes: runner.rowShapes,
    } satisfies WorkerReply,
    async handle(msg) {
      if (msg.type !== 'job') throw new Error(`unknown request ${msg.type}`);
      const t0 = performance.now();
      const out = await runner.run(msg.job, msg.dtype);
      return {
        reply: { type: 'result', id: msg.id, ...out, ms: performance.now() - t0 } satisfies WorkerReply,
        transfer: outputBuffers(out),
      };
    },
    dispose: () => runner.dispose(),
  };
});
