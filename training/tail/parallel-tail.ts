// Data-parallel phase-2 step: tfjs' WASM backend runs one thread per instance in Node, so the
// batch is split into shards, one per thread: the main thread computes its shard's gradients with
// its own tail while worker threads (each its own tfjs + WASM and a copy of the tail) compute
// theirs. Gradients are combined weighted by shard size (the loss is a batch mean) and the
// optimizer runs once, here. Each request carries the current trainable values, so the workers
// always compute with the main thread's weights whatever changed them. BatchNorm is in inference
// mode, so sharding is exact; the dropout mask is drawn for the whole batch here (the tail's
// seeded stream) and its rows sent along, so results do not depend on the split or on timing.
import type { Worker } from 'node:worker_threads';
import type { io, Tensor, Tensor2D, Tensor4D } from '@tensorflow/tfjs';
import { availableCores } from '../../core/engine/cpu.js';
import type { LayersModel } from '../../core/tf.js';
import { tf } from '../../core/tf.js';
import { readRangeSync } from '../../core/tfjs-internals.js';
import { modelArtifacts } from '../export.js';
import { startWorkerChannel, type WithoutId } from '../workers/worker-channel.js';
import type { ShardData, TailWorkerInit, TailWorkerReply, TailWorkerRequest } from '../workers/worker-tail.js';
import { packTensors, unpackTensors } from './flat-tensors.js';
import { createTail, type GradientsResult, type Tail, type TailOptions, type TrainStepResult } from './tail.js';

export interface ParallelOptions {
  /** Threads computing a step, this one included; default: available cores. <= 1: no workers. */
  threads?: number;
}

/** The `Tail` contract with an asynchronous step; `threads` is 1 when it runs in this thread only. */
export interface TrainingTail
  extends Pick<Tail, 'route' | 'gemm' | 'boundaryName' | 'boundaryShape' | 'logits' | 'features' | 'writeBack'> {
  readonly threads: number;
  /** The main thread's variables: the ones the optimizer updates and `writeBack` copies. */
  readonly trainableVariables: tf.Variable[];
  readonly variableNames: string[];
  /** Batch-mean loss gradients over all threads, in `trainableVariables` order; the caller disposes them. */
  computeGradients(boundary: Tensor4D, labels: Tensor, training?: boolean): Promise<GradientsResult>;
  trainStep(boundary: Tensor4D, labels: Tensor, optimizer: tf.Optimizer): Promise<TrainStepResult>;
  /**
   * Inference-mode logits (`logits(batch, false)`) of each batch, `boundaryShape` rows back to
   * back. Whole batches are spread over the threads, so each comes out exactly as `logits` alone
   * would compute it on this thread.
   */
  evaluateLogits(batches: readonly Float32Array[]): Promise<Float32Array[]>;
  /** Per worker: the trainable values it last computed with, and its live tensor count (for tests). */
  workerState(): Promise<{ values: Float32Array; numTensors: number }[]>;
  /** Disposes the tail and ends the worker threads. */
  dispose(): Promise<void>;
}

/** Rows per shard, shard 0 = this thread; the remainder goes to the workers (this thread also combines and steps). */
export function shardSizes(n: number, threads: number): number[] {
  const base = Math.floor(n / threads);
  const extra = n % threads;
  return Array.from({ length: threads }, (_, i) => base + (i >= threads - extra ? 1 : 0));
}

/**
 * A phase-2 tail whose step runs over `threads` threads (data parallel), or the single-thread
 * `createTail` wrapped when threads <= 1 or the backend is not WASM (tfjs-node is already threaded).
 */
export async function createTrainingTail(
  model: LayersModel,
  tailOptions: TailOptions,
  parallel: ParallelOptions = {},
): Promise<TrainingTail> {
  const threads = Math.max(1, Math.floor(parallel.threads ?? availableCores()));
  const tail = createTail(model, tailOptions);
  if (threads <= 1 || tf.getBackend() !== 'wasm' || tail.route !== 'fast') return singleThread(tail);
  try {
    const workers = await startWorkers(model, tailOptions, threads - 1, tail.variableNames);
    return parallelTail(tail, workers);
  } catch (e) {
    tail.dispose();
    throw e;
  }
}

function base(tail: Tail) {
  return {
    route: tail.route,
    gemm: tail.gemm,
    boundaryName: tail.boundaryName,
    boundaryShape: tail.boundaryShape,
    get trainableVariables() {
      return tail.trainableVariables;
    },
    get variableNames() {
      return tail.variableNames;
    },
    logits: (b: Tensor4D, training: boolean) => tail.logits(b, training),
    features: (b: Tensor4D) => tail.features(b),
    writeBack: () => tail.writeBack(),
  };
}

/** Logits of one batch of boundary rows on this thread, in inference mode. */
export function batchLogits(tail: Pick<Tail, 'logits' | 'boundaryShape'>, batch: Float32Array): Float32Array {
  const [h, w, c] = tail.boundaryShape;
  const n = batch.length / (h * w * c);
  if (!Number.isInteger(n)) throw new Error(`a batch of boundary rows must hold whole [${h}, ${w}, ${c}] rows; got ${batch.length} values`);
  return tf.tidy(() => tail.logits(tf.tensor4d(batch, [n, h, w, c]), false).dataSync() as Float32Array);
}

/** Which thread computes each batch: the next largest batch goes to the least-loaded thread (0 = this one). */
export function assignBatches(rows: readonly number[], threads: number): number[] {
  const load = new Array<number>(threads).fill(0);
  const owner = new Array<number>(rows.length).fill(0);
  const bySize = rows.map((r, i) => [r, i]).sort((a, b) => b[0] - a[0] || a[1] - b[1]);
  for (const [r, i] of bySize) {
    let t = 0;
    for (let k = 1; k < threads; k++) if (load[k] < load[t]) t = k;
    owner[i] = t;
    load[t] += r;
  }
  return owner;
}

function singleThread(tail: Tail): TrainingTail {
  return {
    ...base(tail),
    threads: 1,
    computeGradients: async (b, labels, training) => tail.computeGradients(b, labels, training),
    trainStep: async (b, labels, optimizer) => tail.trainStep(b, labels, optimizer),
    evaluateLogits: async (batches) => batches.map((b) => batchLogits(tail, b)),
    workerState: async () => [],
    dispose: async () => tail.dispose(),
  };
}

interface TailWorker {
  worker: Worker;
  request(msg: WithoutId<TailWorkerRequest>, transfer?: ArrayBuffer[]): Promise<TailWorkerReply>;
  close(): Promise<void>;
}

/** The model as one weight buffer, to send to a worker. */
async function serialize(model: LayersModel): Promise<io.ModelArtifacts> {
  const { modelTopology, weightSpecs, weightData } = await modelArtifacts(model);
  return {
    modelTopology,
    weightSpecs,
    weightData: Array.isArray(weightData) ? tf.io.concatenateArrayBuffers(weightData) : weightData,
  };
}

async function startWorkers(model: LayersModel, tailOptions: TailOptions, count: number, variableNames: string[]): Promise<TailWorker[]> {
  const { seed: _seed, ...rest } = tailOptions;
  const init: TailWorkerInit = { entry: 'tail', artifacts: await serialize(model), tailOptions: rest };
  const started = Array.from({ length: count }, (_, i) => startWorker(init, i));
  const settled = await Promise.allSettled(started);
  const workers = settled.flatMap((s) => (s.status === 'fulfilled' ? [s.value] : []));
  const failed = settled.find((s) => s.status === 'rejected');
  try {
    if (failed) throw (failed as PromiseRejectedResult).reason;
    for (const w of workers) {
      const names = (w as TailWorker & { variableNames: string[] }).variableNames;
      if (names.join() !== variableNames.join()) throw new Error('tail worker built different trainable variables than this thread');
    }
  } catch (e) {
    await Promise.all(workers.map((w) => w.close()));
    throw e;
  }
  return workers;
}

async function startWorker(init: TailWorkerInit, index: number): Promise<TailWorker & { variableNames: string[] }> {
  const channel = startWorkerChannel<TailWorkerRequest, TailWorkerReply>(init, {
    label: `tail worker ${index}`,
    unrefWhenIdle: true,
  });
  try {
    const { variableNames } = await channel.ready;
    return {
      worker: channel.worker,
      variableNames,
      close: () => channel.close('the parallel tail was disposed'),
      request: (msg, transfer) => (msg.type === 'close' ? Promise.reject(new Error('use close()')) : channel.request(msg, transfer)),
    };
  } catch (e) {
    await channel.worker.terminate();
    throw e;
  }
}

function rows(t: Tensor, start: number, size: number): Tensor {
  return tf.slice(t, [start, ...t.shape.slice(1).map(() => 0)], [size, ...t.shape.slice(1)]);
}

/** A copy of rows [start, start + size) of `t` (its own buffer, so it can be transferred). */
function rowValues(t: Tensor, start: number, size: number): Float32Array | Int32Array {
  const row = t.size / t.shape[0];
  return readRangeSync(t, start * row, (start + size) * row);
}

function shardData(boundary: Tensor4D, labels: Tensor, mask: Tensor2D | undefined, start: number, size: number): ShardData {
  return {
    boundary: rowValues(boundary, start, size) as Float32Array,
    boundaryShape: [size, ...(boundary.shape.slice(1) as [number, number, number])],
    labels: rowValues(labels, start, size),
    labelsShape: [size, ...labels.shape.slice(1)],
    labelsDtype: labels.dtype === 'int32' ? 'int32' : 'float32',
    mask: mask ? (rowValues(mask, start, size) as Float32Array) : undefined,
  };
}

function parallelTail(tail: Tail, workers: TailWorker[]): TrainingTail {
  const threads = workers.length + 1;
  let busy = false;
  let disposed = false;
  const shapes = () => tail.trainableVariables.map((v) => v.shape);

  async function computeGradients(boundary: Tensor4D, labels: Tensor, training = true): Promise<GradientsResult> {
    if (disposed) throw new Error('this tail was disposed');
    if (busy) throw new Error('a step of this tail is still running: await it first');
    const n = boundary.shape[0];
    if (boundary.rank !== 4 || boundary.shape.slice(1).some((d, i) => d !== tail.boundaryShape[i])) {
      throw new Error(`boundary activations must be [N, ${tail.boundaryShape.join(', ')}]; got [${boundary.shape}]`);
    }
    if (labels.shape[0] !== n) throw new Error(`labels have ${labels.shape[0]} rows but the batch has ${n}`);
    if (labels.dtype !== 'int32' && labels.dtype !== 'float32') throw new Error(`labels must be int32 or float32; got ${labels.dtype}`);
    busy = true;
    const mask = training ? tail.dropoutMask(n) : undefined;
    const sizes = shardSizes(n, threads);
    const owned: Tensor[] = mask ? [mask] : [];
    try {
      const values = packTensors(tail.trainableVariables);
      let start = sizes[0];
      const replies = workers.map((w, i) => {
        const size = sizes[i + 1];
        const first = start;
        start += size;
        if (size === 0) return undefined;
        const shard = shardData(boundary, labels, mask, first, size);
        const transfer = [shard.boundary.buffer, shard.labels.buffer, ...(shard.mask ? [shard.mask.buffer] : [])] as ArrayBuffer[];
        // The last worker takes the packed values themselves, the others a copy each.
        const v = i === workers.length - 1 ? values : values.slice();
        const reply = w.request({ type: 'grads', training, values: v, ...shard }, [...transfer, v.buffer as ArrayBuffer]);
        reply.catch(() => {}); // awaited below; if this thread's shard fails first, a late rejection is not unhandled
        return reply;
      });
      let local: GradientsResult | undefined;
      if (sizes[0] > 0) {
        const b = rows(boundary, 0, sizes[0]) as Tensor4D;
        const l = rows(labels, 0, sizes[0]);
        const m = mask ? (rows(mask, 0, sizes[0]) as Tensor2D) : undefined;
        owned.push(b, l, ...(m ? [m] : []));
        local = tail.computeGradients(b, l, training, m);
        owned.push(...local.grads);
      }
      const parts: { n: number; loss: number; correct: number; grads: Tensor[] }[] = local ? [{ n: sizes[0], ...local }] : [];
      for (const [i, p] of replies.entries()) {
        if (!p) continue;
        const r = await p;
        if (r.type !== 'grads') throw new Error(`tail worker ${i}: unexpected reply ${r.type}`);
        const grads = unpackTensors(r.grads, shapes());
        owned.push(...grads);
        parts.push({ n: sizes[i + 1], loss: r.loss, correct: r.correct, grads });
      }
      const grads = tail.trainableVariables.map((_, v) =>
        tf.tidy(() => (parts.length === 1 ? tf.clone(parts[0].grads[v]) : tf.addN(parts.map((p) => tf.mul(p.grads[v], p.n / n))))),
      );
      return {
        loss: parts.reduce((a, p) => a + p.loss * p.n, 0) / n,
        correct: parts.reduce((a, p) => a + p.correct, 0),
        grads,
      };
    } finally {
      tf.dispose(owned);
      busy = false;
    }
  }

  return {
    ...base(tail),
    threads,
    computeGradients,
    async trainStep(boundary, labels, optimizer) {
      const { loss, correct, grads } = await computeGradients(boundary, labels, true);
      try {
        tail.applyGradients(grads, optimizer);
      } finally {
        tf.dispose(grads);
      }
      return { loss, correct };
    },
    async evaluateLogits(batches) {
      if (disposed) throw new Error('this tail was disposed');
      if (busy) throw new Error('a step of this tail is still running: await it first');
      busy = true;
      try {
        const [h, w, c] = tail.boundaryShape;
        const owner = assignBatches(
          batches.map((b) => b.length / (h * w * c)),
          threads,
        );
        const values = packTensors(tail.trainableVariables);
        const replies = workers.map((wk, i) => {
          const mine = owner.flatMap((t, k) => (t === i + 1 ? [k] : []));
          if (!mine.length) return undefined;
          // Copies: the caller keeps its batches.
          const sent = mine.map((k) => batches[k].slice());
          const v = values.slice();
          const reply = wk.request({ type: 'logits', values: v, batches: sent }, [
            v.buffer as ArrayBuffer,
            ...sent.map((b) => b.buffer as ArrayBuffer),
          ]);
          reply.catch(() => {}); // awaited below
          return { mine, reply };
        });
        const out: Float32Array[] = new Array(batches.length);
        for (const [k, b] of batches.entries()) if (owner[k] === 0) out[k] = batchLogits(tail, b);
        for (const [i, r] of replies.entries()) {
          if (!r) continue;
          const m = await r.reply;
          if (m.type !== 'logits') throw new Error(`tail worker ${i}: unexpected reply ${m.type}`);
          for (const [j, k] of r.mine.entries()) out[k] = m.logits[j];
        }
        return out;
      } finally {
        busy = false;
      }
    },
    async workerState() {
      const out: { values: Float32Array; numTensors: number }[] = [];
      for (const w of workers) {
        const r = await w.request({ type: 'values' });
        if (r.type !== 'values') throw new Error(`unexpected reply ${r.type}`);
        out.push({ values: r.values, numTensors: r.numTensors });
      }
      return out;
    },
    async dispose() {
      if (disposed) return;
      disposed = true;
      tail.dispose();
      await Promise.all(workers.map((w) => w.close()));
    },
  };
}
