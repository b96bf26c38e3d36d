// Worker-thread pool for the boundary forward pass: one engine thread per worker, so N workers use N
// cores. On the wasm engine each worker is its own tfjs + WASM instance; on the ort engine the pool
// writes the frozen layers' ONNX once, here, and each worker only opens an onnxruntime session on it.
import type { io } from '@tensorflow/tfjs';
import { availableCores } from '../../core/engine/cpu.js';
import { type EnginePreference, enginePreference, resolveEngine } from '../../core/engine/engine.js';
import { loadModelArtifacts } from '../../core/file-io.js';
import { tf } from '../../core/tf.js';
import {
  type BoundaryDtype,
  type BoundaryJob,
  type BoundaryModelOptions,
  type BoundaryOutput,
  type BoundaryRunner,
  type BoundaryWeights,
  boundaryOnnx,
  createBoundaryRunner,
  createOrtBoundaryRunner,
  DEFAULT_BOUNDARY,
  jobViews,
} from './boundary-runner.js';
import type { WorkerInit, WorkerReply, WorkerRequest } from './worker-boundary.js';
import { startWorkerChannel, type WorkerChannel } from './worker-channel.js';

export interface BoundaryPoolOptions extends BoundaryModelOptions {
  /** Weights by Keras name, or a model (folder / model.json path / artifacts) to read them from. */
  weights: BoundaryWeights | io.ModelArtifacts | string;
  /** Worker threads; default = available cores. 0 runs in this thread (no workers). */
  workers?: number;
  /** Views per forward call inside a worker. */
  batchSize?: number;
  /** Output encoding of the activations. Default float16. */
  dtype?: BoundaryDtype;
  /** Jobs queued per worker, so a worker never waits for the next message. */
  inFlight?: number;
  /** Engine of the activations: `--engine` / EDGETUNE_ENGINE, default wasm (core/engine). */
  engine?: EnginePreference;
  /** onnxruntime intra-op threads per worker; default 1 (the workers, one per core, are the parallelism). */
  engineThreads?: number;
  /**
   * Workers run at the lowest CPU priority (Linux nice 19, their own threads only), so the main
   * thread's work comes first when both want a core. Default true: in phase 2 the tail's steps are
   * the run's critical path and the workers compute the next epoch's views in what time is left.
   */
  background?: boolean;
}

export interface BoundaryResult extends BoundaryOutput {
  /** Index of the job in the `run` input. */
  index: number;
}

export interface BoundaryPool {
  readonly workers: number;
  /** [h, w, c] of one boundary activation. */
  readonly rowShape: [number, number, number];
  /** [h, w, c] of every layer a job may ask for (the boundary and `extraLayers`). */
  readonly rowShapes: Record<string, [number, number, number]>;
  readonly backend: string;
  /** Worker threads that loaded tfjs: all of them on the wasm engine, none on ort. */
  readonly tfjsWorkers: number;
  /** Results in completion order; `onProgress(outputsDone, outputsTotal)`. */
  stream(jobs: readonly BoundaryJob[], onProgress?: (done: number, total: number) => void): AsyncIterable<BoundaryResult>;
  /** All results, in job order. */
  run(jobs: readonly BoundaryJob[], onProgress?: (done: number, total: number) => void): Promise<BoundaryResult[]>;
  close(): Promise<void>;
}

async function resolveWeights(w: BoundaryPoolOptions['weights']): Promise<BoundaryWeights> {
  const artifacts = typeof w === 'string' ? await loadModelArtifacts(w) : w;
  const specs = artifacts.weightSpecs;
  const data = artifacts.weightData;
  if (!specs || !data) throw new Error('boundary pool: the model has no weights');
  const buffers = Array.isArray(data) ? data : [data];
  const weightData = buffers.length === 1 ? buffers[0] : tf.io.concatenateArrayBuffers(buffers);
  return { weightSpecs: specs, weightData };
}

interface Slot {
  channel: WorkerChannel<WorkerRequest, WorkerReply>;
  busy: number;
}

/** Starts `workers` threads (each loads the weights it is sent, never from disk) and waits until ready. */
export async function createBoundaryPool(opts: BoundaryPoolOptions): Promise<BoundaryPool> {
  const weights = await resolveWeights(opts.weights);
  const dtype = opts.dtype ?? 'float16';
  const count = opts.workers ?? availableCores();
  const engine = (await resolveEngine(enginePreference(opts.engine))).name;
  const model: BoundaryModelOptions & { batchSize?: number } = {
    alpha: opts.alpha,
    inputSize: opts.inputSize,
    boundaryLayer: opts.boundaryLayer ?? DEFAULT_BOUNDARY,
    extraLayers: opts.extraLayers,
    batchSize: opts.batchSize,
  };
  const engineThreads = Math.max(1, opts.engineThreads ?? 1);
  // The same ONNX bytes for every worker and for the in-thread runner: the same activations.
  const onnx = engine === 'ort' ? boundaryOnnx(weights, model) : undefined;
  if (count === 0) {
    const runner = onnx ? await createOrtBoundaryRunner(onnx, { ...model, threads: engineThreads }) : createBoundaryRunner(weights, model);
    return inProcessPool(runner, dtype, opts.inputSize);
  }
  const background = opts.background ?? true;
  const init: WorkerInit = onnx
    ? { ...model, background, engine: 'ort', engineThreads, onnx }
    : { ...model, background, engine: 'wasm', weights };

  const slots: Slot[] = [];
  // One worker failing fails the pool: every waiting and later job is rejected.
  const failAll = (e: Error) => {
    for (const s of slots) s.channel.fail(e);
  };
  for (let i = 0; i < count; i++) {
    const channel = startWorkerChannel<WorkerRequest, WorkerReply>(init, { label: `boundary worker ${i}`, onFail: failAll });
    slots.push({ channel, busy: 0 });
  }
  let info: Extract<WorkerReply, { type: 'ready' }>[];
  try {
    info = await Promise.all(slots.map((s) => s.channel.ready));
  } catch (e) {
    await Promise.all(slots.map((s) => s.channel.worker.terminate()));
    throw e;
  }

  // Streams waiting for a place in a worker's queue: several streams share the workers' places.
  let freed: (() => void)[] = [];
  const placeFreed = () => new Promise<void>((resolve) => freed.push(resolve));
  const send = async (slot: Slot, job: BoundaryJob): Promise<BoundaryOutput> => {
    slot.busy++;
    try {
      // Pixels are copied (not transferred): the caller keeps its decoded images for later epochs.
      const m = await slot.channel.request({ type: 'job', job, dtype });
      if (m.type !== 'result') throw new Error(`boundary worker: unexpected reply ${m.type}`);
      return { data: m.data, dtype: m.dtype, shape: m.shape, outputs: m.outputs };
    } finally {
      slot.busy--;
      const waiting = freed;
      freed = [];
      for (const resolve of waiting) resolve();
    }
  };

  const inFlight = Math.max(1, opts.inFlight ?? 2);
  async function* stream(jobs: readonly BoundaryJob[], onProgress?: (done: number, total: number) => void): AsyncGenerator<BoundaryResult> {
    const total = jobs.reduce((a, j) => a + jobViews(j, opts.inputSize).views.length, 0);
    let done = 0;
    let next = 0;
    const running = new Map<number, Promise<[number, BoundaryOutput]>>();
    const fill = () => {
      while (next < jobs.length) {
        const slot = slots.reduce((a, b) => (b.busy < a.busy ? b : a));
        if (slot.busy >= inFlight) break;
        const index = next++;
        running.set(
          index,
          send(slot, jobs[index]).then((out) => [index, out]),
        );
      }
    };
    fill();
    while (running.size || next < jobs.length) {
      if (!running.size) {
        // Every place is taken by other streams' jobs: wait for one to finish.
        await placeFreed();
        fill();
        continue;
      }
      const [index, out] = await Promise.race(running.values());
      running.delete(index);
      fill();
      done += out.shape[0];
      onProgress?.(done, total);
      yield { index, ...out };
    }
  }

  return {
    workers: count,
    rowShape: info[0].rowShape,
    rowShapes: info[0].rowShapes,
    backend: `${count} worker threads, each ${info[0].backend}`,
    tfjsWorkers: info.filter((i) => i.tfjs).length,
    stream,
    async run(jobs, onProgress) {
      const results: BoundaryResult[] = new Array(jobs.length);
      for await (const r of stream(jobs, onProgress)) results[r.index] = r;
      return results;
    },
    async close() {
      await Promise.all(slots.map((s) => s.channel.close('boundary pool closed')));
    },
  };
}

function inProcessPool(runner: BoundaryRunner, dtype: BoundaryDtype, inputSize: number): BoundaryPool {
  async function* stream(jobs: readonly BoundaryJob[], onProgress?: (done: number, total: number) => void): AsyncGenerator<BoundaryResult> {
    const total = jobs.reduce((a, j) => a + jobViews(j, inputSize).views.length, 0);
    let done = 0;
    for (let index = 0; index < jobs.length; index++) {
      const out = await runner.run(jobs[index], dtype);
      done += out.shape[0];
      onProgress?.(done, total);
      yield { index, ...out };
    }
  }
  return {
    workers: 0,
    rowShape: runner.rowShape,
    rowShapes: runner.rowShapes,
    backend: `in-process (this thread), ${runner.engine}`,
    tfjsWorkers: 0,
    stream,
    async run(jobs, onProgress) {
      const results: BoundaryResult[] = [];
      for await (const r of stream(jobs, onProgress)) results.push(r);
      return results;
    },
    async close() {
      runner.dispose();
    },
  };
}
