// Worker thread of the boundary pool, running a BoundaryRunner. On the wasm engine it starts its own
// tfjs + WASM instance and builds the base from the weights it is sent; on the ort engine it gets the
// ONNX the pool wrote and loads only onnxruntime: no tfjs, no WASM heap beside the session.
// Started through worker-entry.mjs, which registers tsx so this TypeScript file loads anywhere.
import os from 'node:os';
import { workerData } from 'node:worker_threads';
import type { BoundaryDtype, BoundaryJob, BoundaryModelOptions, BoundaryRunner, BoundaryWeights, LayerOutput } from './boundary-job.js';
import { createOrtBoundaryRunner, outputBuffers } from './boundary-job.js';
import { serveWorker } from './worker-channel.js';

interface WorkerInitBase extends BoundaryModelOptions {
  batchSize?: number;
  /** Lower this thread's CPU priority (boundary-pool.ts `background`). */
  background?: boolean;
}

/** The wasm engine (the default): the worker builds the base from `weights` in its own tfjs. */
export interface WasmWorkerInit extends WorkerInitBase {
  engine?: 'wasm';
  weights: BoundaryWeights;
  backend?: 'wasm' | 'cpu' | 'auto';
}

/** The ort engine: the frozen layers' ONNX, written once by the pool (boundary-runner.ts `boundaryOnnx`). */
export interface OrtWorkerInit extends WorkerInitBase {
  engine: 'ort';
  onnx: Uint8Array;
  /** onnxruntime intra-op threads of this worker. */
  engineThreads?: number;
}

export type WorkerInit = WasmWorkerInit | OrtWorkerInit;

export type WorkerRequest = { type: 'job'; id: number; job: BoundaryJob; dtype: BoundaryDtype } | { type: 'close' };

export type WorkerReply =
  | {
      type: 'ready';
      backend: string;
      rowShape: [number, number, number];
      rowShapes: Record<string, [number, number, number]>;
      /** Whether this thread loaded tfjs (the ort engine must not). */
      tfjs: boolean;
    }
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

/** tfjs-core registers its engine on the global object when it loads. */
const tfjsLoaded = () => '_tfengine' in globalThis;

async function startRunner(init: WorkerInit): Promise<{ runner: BoundaryRunner; backend: string }> {
  if (init.engine === 'ort') {
    const runner = await createOrtBoundaryRunner(init.onnx, { ...init, threads: init.engineThreads });
    // The session holds its own copy of the graph: let the bytes go.
    (workerData as Partial<OrtWorkerInit>).onnx = undefined;
    return { runner, backend: runner.engine };
  }
  // Loaded here only: the ort workers never load tfjs.
  const [{ describeBackend, initBackend }, { createBoundaryRunner }] = await Promise.all([
    import('../../core/backend.js'),
    import('./boundary-runner.js'),
  ]);
  // One XNNPACK thread per worker: the pool itself is the parallelism.
  const info = await initBackend(init.backend === 'cpu' ? 'cpu' : 'wasm', () => {}, { wasmThreads: 1 });
  return { runner: createBoundaryRunner(init.weights, init), backend: describeBackend(info) };
}

/**
 * Linux: nice 19 for this thread alone (setpriority of thread id 0 is the calling thread there; the
 * onnxruntime session runs on it, with one intra-op thread, and the threads it starts inherit it).
 * Elsewhere setpriority would lower the whole process, so nothing changes.
 */
function lowerThreadPriority(): void {
  if (process.platform !== 'linux') return;
  try {
    os.setPriority(19);
  } catch {
    // not allowed here: the worker runs at the normal priority
  }
}

await serveWorker<WorkerRequest>(async () => {
  const init = workerData as WorkerInit;
  if (init.background) lowerThreadPriority();
  const { runner, backend } = await startRunner(init);
  // One job at a time: the pool queues many, and an async engine (ort) would otherwise start them
  // all at once, each holding its input and output buffers while it waits for the session.
  let queue: Promise<unknown> = Promise.resolve();
  return {
    ready: {
      type: 'ready',
      backend,
      rowShape: runner.rowShape,
      rowShapes: runner.rowShapes,
      tfjs: tfjsLoaded(),
    } satisfies WorkerReply,
    async handle(msg) {
      if (msg.type !== 'job') throw new Error(`unknown request ${msg.type}`);
      const run = queue.then(async () => {
        const t0 = performance.now();
        return { out: await runner.run(msg.job, msg.dtype), ms: performance.now() - t0 };
      });
      queue = run.catch(() => {});
      const { out, ms } = await run;
      return {
        reply: { type: 'result', id: msg.id, ...out, ms } satisfies WorkerReply,
        transfer: outputBuffers(out),
      };
    },
    dispose: () => runner.dispose(),
  };
});
