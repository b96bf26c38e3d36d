// Worker thread of the parallel tail: its own tfjs + WASM instance holding a copy of the tail. Per
// request it takes the main thread's current trainable values, computes the loss gradients of
// its shard of the batch and sends them back; the optimizer runs on the main thread only.
// Started through worker-entry.mjs (`workerData.entry = 'tail'`).
import { workerData } from 'node:worker_threads';
import type { io, Tensor, Tensor2D, Tensor4D } from '@tensorflow/tfjs';
import { describeBackend, initBackend } from '../../core/backend.js';
import { tf } from '../../core/tf.js';
import { packTensors, unpackTensors } from '../tail/flat-tensors.js';
import { batchLogits } from '../tail/parallel-tail.js';
import { createTail, type Tail, type TailOptions } from '../tail/tail.js';
import { serveWorker } from './worker-channel.js';

export interface TailWorkerInit {
  entry: 'tail';
  artifacts: io.ModelArtifacts;
  /** The main tail's options without its seed: masks come from the main thread. */
  tailOptions: Omit<TailOptions, 'seed'>;
}

export interface ShardData {
  boundary: Float32Array;
  boundaryShape: [number, number, number, number];
  labels: Float32Array | Int32Array;
  labelsShape: number[];
  labelsDtype: 'float32' | 'int32';
  /** Rows of the batch's dropout mask; absent without dropout. */
  mask?: Float32Array;
}

export type TailWorkerRequest =
  | ({ type: 'grads'; id: number; training: boolean; values: Float32Array } & ShardData)
  | { type: 'values'; id: number }
  | { type: 'logits'; id: number; values: Float32Array; batches: Float32Array[] }
  | { type: 'close' };

export type TailWorkerReply =
  | { type: 'ready'; backend: string; variableNames: string[] }
  | { type: 'grads'; id: number; loss: number; correct: number; grads: Float32Array; ms: number; syncMs: number }
  | { type: 'values'; id: number; values: Float32Array; numTensors: number }
  | { type: 'logits'; id: number; logits: Float32Array[] }
  | { type: 'error'; id?: number; message: string };

function assignValues(tail: Tail, values: Float32Array): void {
  const vars = tail.trainableVariables;
  const fresh = unpackTensors(
    values,
    vars.map((v) => v.shape),
  );
  vars.forEach((v, i) => {
    v.assign(fresh[i]);
  });
  tf.dispose(fresh);
}

function gradients(tail: Tail, msg: Extract<TailWorkerRequest, { type: 'grads' }>) {
  const keep: Tensor[] = [];
  try {
    const boundary = tf.tensor4d(msg.boundary, msg.boundaryShape);
    const labels = tf.tensor(msg.labels, msg.labelsShape, msg.labelsDtype);
    keep.push(boundary, labels);
    let mask: Tensor2D | undefined;
    if (msg.mask) {
      mask = tf.tensor2d(msg.mask, [msg.boundaryShape[0], msg.mask.length / msg.boundaryShape[0]]);
      keep.push(mask);
    }
    const r = tail.computeGradients(boundary as Tensor4D, labels, msg.training, mask);
    keep.push(...r.grads);
    return { loss: r.loss, correct: r.correct, grads: packTensors(r.grads) };
  } finally {
    tf.dispose(keep);
  }
}

await serveWorker<TailWorkerRequest>(async () => {
  const init = workerData as TailWorkerInit;
  // One XNNPACK thread: the workers themselves are the parallelism.
  const info = await initBackend('wasm', () => {}, { wasmThreads: 1 });
  const model = await tf.loadLayersModel(tf.io.fromMemory(init.artifacts));
  const tail = createTail(model, init.tailOptions);
  return {
    ready: { type: 'ready', backend: describeBackend(info), variableNames: tail.variableNames } satisfies TailWorkerReply,
    handle(msg) {
      if (msg.type === 'values') {
        const values = packTensors(tail.trainableVariables);
        return {
          reply: { type: 'values', id: msg.id, values, numTensors: tf.memory().numTensors } satisfies TailWorkerReply,
          transfer: [values.buffer as ArrayBuffer],
        };
      }
      if (msg.type === 'logits') {
        assignValues(tail, msg.values);
        const logits = msg.batches.map((b) => batchLogits(tail, b));
        return {
          reply: { type: 'logits', id: msg.id, logits } satisfies TailWorkerReply,
          transfer: logits.map((l) => l.buffer as ArrayBuffer),
        };
      }
      if (msg.type !== 'grads') throw new Error(`unknown request ${msg.type}`);
      const t0 = performance.now();
      assignValues(tail, msg.values);
      const t1 = performance.now();
      const r = gradients(tail, msg);
      return {
        reply: { type: 'grads', id: msg.id, ...r, ms: performance.now() - t0, syncMs: t1 - t0 } satisfies TailWorkerReply,
        transfer: [r.grads.buffer as ArrayBuffer],
      };
    },
    dispose: () => tail.dispose(),
  };
});
