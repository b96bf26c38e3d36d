// Where one phase-2 step's time goes on WASM (one thread, the fast tail): each kernel's share of
// the shard's gradient computation (forward and backward), the optimizer step, and what the
// data-parallel step adds around it (packing values, copying shards, combining gradients).
// Kernel times come from tf.profile (wall time per kernel, this thread); kernels our gradient
// kernels call internally are counted inside them.
// Usage: npm run bench:tail -- --profile [--size 224 --batch 16 --steps 3 --gemm ort|wasm]
import { existsSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { initBackend } from '../core/backend.js';
import { buildClassifier } from '../core/classifier.js';
import type { Tensor4D } from '../core/tf.js';
import { tf } from '../core/tf.js';
import { applyBaseWeights } from '../core/weights/index.js';
import { readTfjsWeights } from '../core/weights/tfjs-source.js';
import { fusedAdam } from '../training/fused-adam.js';
import { packTensors, unpackTensors } from '../training/tail/flat-tensors.js';
import { boundaryLayerName, createTail } from '../training/tail/tail.js';
import { registerWasmGradKernels } from '../training/wasm-kernels/wasm-grad-kernels.js';
import { machineLine } from './machine.js';

console.log(machineLine());

export async function profileTail(args: string[]): Promise<void> {
  const opt = (name: string, dflt: string) => {
    const i = args.indexOf(`--${name}`);
    return i >= 0 ? args[i + 1] : dflt;
  };
  const size = Number(opt('size', '224'));
  const batch = Number(opt('batch', '16'));
  const steps = Number(opt('steps', '3'));
  const fineTuneAt = Number(opt('fine-tune-at', '120'));
  const gemm = opt('gemm', 'ort') as 'ort' | 'wasm';
  const repo = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
  const weightsPath = path.resolve(repo, '../shared/weights/mobilenet_v2_1.0_224_imagenet/model.json');
  registerWasmGradKernels();
  await initBackend('wasm');
  const model = buildClassifier({ alpha: 1.0, inputSize: size, numClasses: 2 });
  if (existsSync(weightsPath)) applyBaseWeights(model, (await readTfjsWeights(weightsPath)).weights);
  const shape = model.getLayer(boundaryLayerName(fineTuneAt)).outputShape as number[];
  const boundary = tf.randomUniform([batch, ...shape.slice(1)] as [number, number, number, number], 0, 6) as Tensor4D;
  const labels = tf.tensor1d(
    Array.from({ length: batch }, (_, i) => i % 2),
    'int32',
  );
  const tail = createTail(model, { fineTuneAt, numClasses: 2, route: 'fast', seed: 1, gemm });
  const optimizer = fusedAdam(1e-4); // what phase 2 uses
  console.log(
    `tail profile: ${size}x${size}, shard of ${batch} rows, boundary [${shape.slice(1)}], one WASM thread, 1x1 products on ${gemm}; load average ${os.loadavg()[0].toFixed(1)} (indicative)`,
  );

  const byKernel = new Map<string, number>();
  const byShape = new Map<string, number>();
  let forwardMs = 0;
  let gradsMs = 0;
  let adamMs = 0;
  let packMs = 0;
  let combineMs = 0;
  const first = tail.computeGradients(boundary, labels, true); // warm-up: kernels, XNNPACK caches
  tail.applyGradients(first.grads, optimizer);
  tf.dispose(first.grads);
  for (let s = 0; s < steps; s++) {
    let t = performance.now();
    tf.dispose(tail.logits(boundary, true));
    forwardMs += performance.now() - t;
    let grads: tf.Tensor[] = [];
    t = performance.now();
    const info = await tf.profile(() => {
      grads = tail.computeGradients(boundary, labels, true).grads;
      return grads;
    });
    gradsMs += performance.now() - t;
    for (const k of info.kernels) {
      const ms = await k.kernelTimeMs;
      if (typeof ms !== 'number' || k.name === 'forward') continue; // 'forward': customGrad's wrapper, its kernels count on their own
      byKernel.set(k.name, (byKernel.get(k.name) ?? 0) + ms);
      if (k.name === 'BatchMatMul' || k.name === '_FusedMatMul') {
        // [m, k] @ [k, n]: a filter gradient sums over the shard's pixels (k = pixels), an input gradient does not.
        const [[m, kk], [, n]] = (k.inputShapes as number[][]).map((s) => s.slice(-2));
        const pixels = batch * (size / 32) ** 2;
        const role = k.name === '_FusedMatMul' ? 'forward x @ W' : kk === pixels ? 'filter grad (x^T dz or dz^T x)' : 'input grad dz @ W^T';
        const key = `${role} [${m}x${kk}]@[${kk}x${n}]`;
        byShape.set(key, (byShape.get(key) ?? 0) + ms);
      }
    }
    // What the parallel step does around the shard on this thread: values packed for the workers,
    // then a worker's flat gradients (here: this shard's again) unpacked and combined with this
    // shard's, weighted by size (tf.mul + tf.addN per variable).
    t = performance.now();
    const values = packTensors(tail.trainableVariables);
    packMs += performance.now() - t;
    const workerFlat = packTensors(grads);
    t = performance.now();
    const other = unpackTensors(
      workerFlat,
      grads.map((g) => g.shape),
    );
    const combined = grads.map((g, i) => tf.tidy(() => tf.addN([tf.mul(g, 0.5), tf.mul(other[i], 0.5)])));
    for (const c of combined) c.dataSync();
    combineMs += performance.now() - t;
    t = performance.now();
    tail.applyGradients(combined, optimizer);
    for (const v of tail.trainableVariables.slice(-1)) v.dataSync();
    adamMs += performance.now() - t;
    tf.dispose([...grads, ...other, ...combined]);
    void values;
  }
  const per = (ms: number) => (ms / steps).toFixed(1).padStart(7);
  const kernelTotal = [...byKernel.values()].reduce((a, b) => a + b, 0);
  console.log(`per step (mean of ${steps}), ms:`);
  console.log(`  forward only (logits, training)      ${per(forwardMs)}`);
  console.log(`  gradients (forward + backward)       ${per(gradsMs)}   kernels ${per(kernelTotal)}`);
  console.log(`  pack trainable values (to workers)   ${per(packMs)}`);
  console.log(`  unpack + combine a worker's gradients ${per(combineMs)}`);
  console.log(`  Adam step                            ${per(adamMs)}`);
  console.log('kernels by share of the gradient computation:');
  for (const [name, ms] of [...byKernel].sort((a, b) => b[1] - a[1]).slice(0, 20)) {
    console.log(`  ${name.padEnd(38)} ${per(ms)} ms ${((100 * ms) / kernelTotal).toFixed(1).padStart(5)}%`);
  }
  console.log('matrix products by role and shape:');
  for (const [key, ms] of [...byShape].sort((a, b) => b[1] - a[1]).slice(0, 16)) {
    console.log(`  ${key.padEnd(48)} ${per(ms)} ms ${((100 * ms) / kernelTotal).toFixed(1).padStart(5)}%`);
  }
  tail.dispose();
  optimizer.dispose();
  tf.dispose([boundary, labels]);
  model.dispose();
}
