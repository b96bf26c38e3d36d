// Seconds per phase-2 step (batch 32, fineTuneAt 120, alpha 1.0) on cached boundary activations:
// the fast tail on WASM, the model's own layers with the registered kernels on WASM, and one
// step on the cpu backend, and the data-parallel fast tail over worker threads (`parallel`).
// Usage: npm run bench:tail [-- --sizes 224,160 --steps 5 --routes fast,layers,parallel --threads 2 --gemm ort,wasm --no-cpu --cpu-layers]
//        (--gemm: where the fast tail's 1x1 products run, onnxruntime or tfjs WASM; default both)
//        npm run bench:tail -- --profile [--size 224 --batch 16]   (where a step's time goes: bench/tail-profile.ts)
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { initBackend } from '../core/backend.js';
import { buildClassifier } from '../core/classifier.js';
import type { Tensor4D } from '../core/tf.js';
import { tf } from '../core/tf.js';
import { applyBaseWeights } from '../core/weights/index.js';
import { readTfjsWeights } from '../core/weights/tfjs-source.js';
import { fusedAdam } from '../training/fused-adam.js';
import { createTrainingTail } from '../training/tail/parallel-tail.js';
import { boundaryLayerName, createTail, type TailRoute } from '../training/tail/tail.js';
import { registerWasmGradKernels } from '../training/wasm-kernels/wasm-grad-kernels.js';
import { machineLine } from './machine.js';

console.log(machineLine());

const args = process.argv.slice(2);
if (args.includes('--profile')) {
  const { profileTail } = await import('./tail-profile.js');
  await profileTail(args);
  process.exit(0);
}
const opt = (name: string, dflt: string) => {
  const i = args.indexOf(`--${name}`);
  return i >= 0 ? args[i + 1] : dflt;
};
const sizes = opt('sizes', '224,160').split(',').map(Number);
const steps = Number(opt('steps', '5'));
const batch = Number(opt('batch', '32'));
const fineTuneAt = Number(opt('fine-tune-at', '120'));
type BenchRoute = TailRoute | 'parallel';
const routes = opt('routes', 'parallel,fast,layers').split(',') as BenchRoute[];
const threads = Number(opt('threads', '2'));
const gemms = opt('gemm', 'ort,wasm').split(',') as ('ort' | 'wasm')[];
const withCpu = !args.includes('--no-cpu');
// The standard layers on the cpu backend use its naive convolution gradients: > 10 minutes a step.
const cpuRoutes: TailRoute[] = args.includes('--cpu-layers') ? ['fast', 'layers'] : ['fast'];
const repo = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const weightsPath = path.resolve(repo, '../shared/weights/mobilenet_v2_1.0_224_imagenet/model.json');

registerWasmGradKernels();
await initBackend('wasm');
const weights = existsSync(weightsPath) ? (await readTfjsWeights(weightsPath)).weights : undefined;
console.log(`weights: ${weights ? weightsPath : 'random (shared alpha 1.0 weights not found)'}; batch ${batch}, fineTuneAt ${fineTuneAt}`);
console.log(
  `figures are indicative: the machine is shared (load average ${(await import('node:os')).loadavg()[0].toFixed(1)}); CPU seconds are this process's`,
);

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)];
}

interface Timing {
  perStep: number;
  cpuPerStep: number;
  /** CPU seconds of the two busiest threads (Linux; else the process): a lower bound of an idle machine's wall time. */
  busiestPerStep: [number, number];
  all: number[];
}

/** CPU seconds per thread of this process (/proc/self/task; undefined where there is none). */
function threadCpu(): Map<string, number> | undefined {
  try {
    const tick = 100; // USER_HZ
    const out = new Map<string, number>();
    for (const tid of readdirSync('/proc/self/task')) {
      const stat = readFileSync(`/proc/self/task/${tid}/stat`, 'utf8');
      const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      out.set(tid, (Number(f[11]) + Number(f[12])) / tick);
    }
    return out;
  } catch {
    return undefined;
  }
}

function busiest(before: Map<string, number> | undefined, after: Map<string, number> | undefined, fallback: number): [number, number] {
  if (!before || !after) return [fallback, 0];
  const used = [...after].map(([tid, s]) => s - (before.get(tid) ?? 0)).sort((a, b) => b - a);
  return [used[0] ?? 0, used[1] ?? 0];
}

/** Wall seconds, and CPU seconds (closer to an idle machine's wall time when the CPU is shared). */
async function timeSteps(route: BenchRoute, backend: string, size: number, n: number, gemm: 'ort' | 'wasm' = 'wasm'): Promise<Timing> {
  tf.setBackend(backend);
  const model = buildClassifier({ alpha: 1.0, inputSize: size, numClasses: 2 });
  if (weights) applyBaseWeights(model, weights);
  const shape = model.getLayer(boundaryLayerName(fineTuneAt)).outputShape as number[];
  const boundary = tf.randomUniform([batch, ...shape.slice(1)] as [number, number, number, number], 0, 6) as Tensor4D;
  const labels = tf.tensor1d(
    Array.from({ length: batch }, (_, i) => i % 2),
    'int32',
  );
  const tail =
    route === 'parallel'
      ? await createTrainingTail(model, { fineTuneAt, numClasses: 2, route: 'fast', gemm }, { threads })
      : createTail(model, { fineTuneAt, numClasses: 2, route, ...(route === 'fast' ? { gemm } : {}) });
  const optimizer = fusedAdam(1e-4); // what phase 2 uses
  const all: number[] = [];
  const cpu: number[] = [];
  const top: [number, number][] = [];
  for (let i = 0; i < n + 1; i++) {
    const t0 = performance.now();
    const c0 = process.cpuUsage();
    const p0 = threadCpu();
    await tail.trainStep(boundary, labels, optimizer);
    const p1 = threadCpu();
    const c1 = process.cpuUsage(c0);
    if (i > 0 || n === 0) {
      all.push((performance.now() - t0) / 1000);
      cpu.push((c1.user + c1.system) / 1e6);
      top.push(busiest(p0, p1, (c1.user + c1.system) / 1e6));
    }
  }
  await tail.dispose();
  optimizer.dispose();
  tf.dispose([boundary, labels]);
  model.dispose();
  tf.setBackend('wasm');
  return {
    perStep: median(all),
    cpuPerStep: median(cpu),
    busiestPerStep: [median(top.map((t) => t[0])), median(top.map((t) => t[1]))],
    all,
  };
}

for (const size of sizes) {
  for (const route of routes) {
    for (const gemm of route === 'layers' ? (['wasm'] as const) : gemms) {
      const r = await timeSteps(route, 'wasm', size, steps, gemm);
      const label = `${route === 'parallel' ? `parallel (${threads} threads)` : route}${route === 'layers' ? '' : `, products on ${gemm}`}`;
      console.log(
        `${size}x${size} ${label.padEnd(6)} wasm: ${r.perStep.toFixed(3)} s/step wall, ${r.cpuPerStep.toFixed(3)} s CPU all threads, ` +
          `${r.busiestPerStep.map((s) => s.toFixed(2)).join(' + ')} s CPU two busiest threads (median of ${r.all.length}; wall ${r.all.map((s) => s.toFixed(2)).join(' ')})`,
      );
    }
  }
  if (withCpu) {
    for (const route of cpuRoutes) {
      const r = await timeSteps(route, 'cpu', size, 0);
      console.log(
        `${size}x${size} ${route.padEnd(6)} cpu : ${r.perStep.toFixed(3)} s/step wall, ${r.cpuPerStep.toFixed(3)} s CPU (one step)`,
      );
    }
  }
}
