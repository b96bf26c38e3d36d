// Worker thread of the boundary pool: its own tfjs + WASM instance running a BoundaryRunner.
// Started through worker-entry.mjs, which registers tsx so this TypeScript file loads anywhere.
import { parentPort, workerData } from 'node:worker_threads';
import { initBackend } from '../../core/backend.js';
import type { BoundaryDtype, BoundaryJob, BoundaryModelOptions, BoundaryRunner, BoundaryWeights, LayerOutput } from './boundary-runner.js';
import { createBoundaryRunner, outputBuffers } from './boundary-runner.js';

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

async function main(): Promise<void> {
  const port = parentPort;
  if (!port) throw new Error('worker-boundary must run in a worker thread');
  const init = workerData as WorkerInit;
  let runner: BoundaryRunner;
  try {
    // One XNNPACK thread per worker: the pool itself is the parallelism.
    const info = await initBackend(init.backend === 'cpu' ? 'cpu' : 'wasm', () => {}, { wasmThreads: 1 });
    runner = createBoundaryRunner(init.weights, init);
    const { describeBackend } = await import('../../core/backend.js');
    port.postMessage({
      type: 'ready',
      backend: describeBackend(info),
      rowShape: runner.rowShape,
      rowShapes: runner.rowShapes,
    } satisfies WorkerReply);
  } catch (e) {
    port.postMessage({ type: 'error', message: `worker init failed: ${(e as Error).message}` } satisfies WorkerReply);
    return;
  }
  port.on('message', async (msg: WorkerRequest) => {
    if (msg.type === 'close') {
      runner.dispose();
      port.close();
      return;
    }
    const t0 = performance.now();
    try {
      const out = await runner.run(msg.job, msg.dtype);
      const reply: WorkerReply = { type: 'result', id: msg.id, ...out, ms: performance.now() - t0 };
      port.postMessage(reply, outputBuffers(out));
    } catch (e) {
      port.postMessage({ type: 'error', id: msg.id, message: (e as Error).message } satisfies WorkerReply);
    }
  });
}

await main();
