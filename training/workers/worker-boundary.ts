// Worker thread of the boundary pool: its own tfjs + WASM instance running a BoundaryRunner.
// Started through worker-entry.mjs, which registers tsx so this TypeScript file loads anywhere.
import { workerData } from 'node:worker_threads';
import { describeBackend, initBackend } from '../../core/backend.js';
import type { BoundaryDtype, BoundaryJob, BoundaryModelOptions, BoundaryWeights, LayerOutput } from './boundary-runner.js';
import { createBoundaryRunner, outputBuffers } from './boundary-runner.js';
import { serveWorker } from './worker-channel.js';

export interface WorkerInit extends BoundaryModelOptions {
  weights: BoundaryWeights;
  batchSize?: number;
  backend?: 'wasm' | 'cpu' | 'auto';
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
  // One XNNPACK thread per worker: the pool itself is the parallelism.
  const info = await initBackend(init.backend === 'cpu' ? 'cpu' : 'wasm', () => {}, { wasmThreads: 1 });
  const runner = createBoundaryRunner(init.weights, init);
  return {
    ready: {
      type: 'ready',
      backend: describeBackend(info),
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
