// npm run bench:forward — single-image classify latency (layers model.predict vs the fused
// executor) and boundary forward throughput (worker pool, 1 and 2 workers) with the shared ImageNet
// weights, for alpha 1.0 / 0.35 at 160 / 224. Options: --alphas 1,0.35 --sizes 160,224 --views 48
// --runs 20 --no-threaded (skip the threaded-WASM latency child) --latency-only
// --engine wasm|ort|both (core/engine; default wasm): ort adds onnxruntime latency (1 and 2 intra-op
// threads) and runs the boundary pool on it (2 workers x 1 thread, 1 worker x 2 threads).
// --breakdown: where one augmented boundary view's CPU time goes on each engine, stage by stage, in
// this thread (decode is done once per image and cached, so it is not part of a view).
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Tensor } from '@tensorflow/tfjs';
import { describeBackend, initBackend } from '../core/backend.js';
import { buildClassifier } from '../core/classifier.js';
import { createEngine, type EngineName } from '../core/engine/engine.js';
import { createFastForward } from '../core/fast-forward.js';
import { loadModelArtifacts } from '../core/file-io.js';
import { tf } from '../core/tf.js';
import { applyBaseWeights } from '../core/weights/apply.js';
import type { AugmentDraw } from '../training/augment.js';
import { applyAugmentation } from '../training/augment.js';
import { toFloat16 } from '../training/workers/boundary-float16.js';
import { createBoundaryPool } from '../training/workers/boundary-pool.js';
import { type BoundaryWeights, baseFromWeights, DEFAULT_BOUNDARY, namedWeights } from '../training/workers/boundary-runner.js';
import { machineLine } from './machine.js';

console.log(machineLine());

const REPO = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const SHARED = process.env.EDGETUNE_SHARED_DIR ?? path.resolve(REPO, '../shared');
const WEIGHTS: Record<string, string> = {
  '1': path.join(SHARED, 'weights/mobilenet_v2_1.0_224_imagenet/model.json'),
  '0.35': path.join(SHARED, 'weights/mobilenet_v2_0.35_224_imagenet/model.json'),
};

function arg(name: string, fallback: string): string {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 && process.argv[i + 1] ? process.argv[i + 1] : fallback;
}
const flag = (name: string) => process.argv.includes(`--${name}`);

const alphas = arg('alphas', '1,0.35').split(',').map(Number);
const sizes = arg('sizes', '160,224').split(',').map(Number);
const views = Number(arg('views', '48'));
const runs = Number(arg('runs', '20'));
const engineArg = arg('engine', 'wasm');
if (!['wasm', 'ort', 'both'].includes(engineArg)) throw new Error(`--engine must be wasm, ort or both, not '${engineArg}'`);
const engines: EngineName[] = engineArg === 'both' ? ['wasm', 'ort'] : [engineArg as EngineName];

function stats(ms: number[]): { p50: number; min: number } {
  const s = [...ms].sort((a, b) => a - b);
  return { p50: s[Math.floor(s.length / 2)], min: s[0] };
}

/** CPU time of this process (all threads), ms: unlike wall time, barely affected by other processes. */
function cpuMs(): number {
  const u = process.cpuUsage();
  return (u.user + u.system) / 1000;
}

function timeIt(f: () => Tensor): { p50: number; min: number; cpu: number } {
  for (let i = 0; i < 3; i++) f().dispose();
  const ms: number[] = [];
  const cpu: number[] = [];
  for (let i = 0; i < runs; i++) {
    const t = performance.now();
    const c = cpuMs();
    const y = f();
    y.dataSync();
    y.dispose();
    ms.push(performance.now() - t);
    cpu.push(cpuMs() - c);
  }
  return { ...stats(ms), cpu: stats(cpu).p50 };
}

async function timeAsync(f: () => Promise<unknown>): Promise<{ p50: number; min: number; cpu: number }> {
  for (let i = 0; i < 3; i++) await f();
  const ms: number[] = [];
  const cpu: number[] = [];
  for (let i = 0; i < runs; i++) {
    const t = performance.now();
    const c = cpuMs();
    await f();
    ms.push(performance.now() - t);
    cpu.push(cpuMs() - c);
  }
  return { ...stats(ms), cpu: stats(cpu).p50 };
}

async function weightsFor(alpha: number): Promise<BoundaryWeights | undefined> {
  const file = WEIGHTS[String(alpha)];
  if (!file || !existsSync(file)) return undefined;
  const a = await loadModelArtifacts(file);
  return { weightSpecs: a.weightSpecs ?? [], weightData: a.weightData as ArrayBuffer };
}

const fmt = (x: number) => x.toFixed(1).padStart(6);

async function latency(): Promise<void> {
  for (const alpha of alphas) {
    const weights = await weightsFor(alpha);
    if (!weights) {
      console.log(`alpha ${alpha}: skipped, no shared weights at ${WEIGHTS[String(alpha)]}`);
      continue;
    }
    for (const size of sizes) {
      // The exported classifier graph (2 classes), base weights from ImageNet, head as initialised.
      const model = buildClassifier({ alpha, inputSize: size, numClasses: 2 });
      applyBaseWeights(model, namedWeights(weights));
      const ff = createFastForward(model);
      const x = tf.randomUniform([1, size, size, 3], 0, 255, 'float32', 1);
      const layers = timeIt(() => model.predict(x) as Tensor);
      const fused = timeIt(() => ff.forward(x));
      const ort: string[] = [];
      if (engines.includes('ort')) {
        const px = x.dataSync() as Float32Array;
        for (const threads of [1, 2]) {
          const e = await createEngine(model, 'ort', { threads });
          const t = await timeAsync(() => e.run(px, 1));
          ort.push(` | ort ${threads} thread${threads > 1 ? 's' : ''} p50 ${fmt(t.p50)} ms (min ${fmt(t.min)}, cpu ${fmt(t.cpu)})`);
          await e.dispose();
        }
      }
      console.log(
        `latency alpha ${alpha} ${size}x${size}: layers predict p50 ${fmt(layers.p50)} ms (min ${fmt(layers.min)}, cpu ${fmt(layers.cpu)}) | fused p50 ${fmt(fused.p50)} ms (min ${fmt(fused.min)}, cpu ${fmt(fused.cpu)}) | ${(layers.p50 / fused.p50).toFixed(2)}x${ort.join('')}`,
      );
      x.dispose();
      ff.dispose();
      model.dispose();
    }
  }
}

const DRAW: AugmentDraw = { flipH: true, flipV: false, angle: 0.15, zoom: 1.1, contrast: 1.2 };
/** What both recipes draw (flip + rotation): the views of a training run's boundary passes. */
const RECIPE_DRAW: AugmentDraw = { flipH: true, flipV: false, angle: 0.12, zoom: 1, contrast: 1 };

async function throughput(): Promise<void> {
  for (const alpha of alphas) {
    const weights = await weightsFor(alpha);
    if (!weights) continue;
    for (const size of sizes) {
      const perImage = 4;
      const img = (seed: number) => new Uint8Array(size * size * 3).map((_, i) => (i * 13 + seed * 101 + (i >> 7)) % 256);
      const jobs = Array.from({ length: Math.ceil(views / perImage) }, (_, i) => ({
        pixels: img(i),
        views: Array<AugmentDraw>(perImage).fill(RECIPE_DRAW),
      }));
      for (const engine of engines) {
        const line: string[] = [];
        const setups =
          engine === 'ort'
            ? [
                { workers: 1, threads: 1 },
                { workers: 2, threads: 1 },
                { workers: 1, threads: 2 },
              ]
            : [
                { workers: 1, threads: 1 },
                { workers: 2, threads: 1 },
              ];
        for (const { workers, threads } of setups) {
          const t0 = performance.now();
          const pool = await createBoundaryPool({
            weights,
            alpha,
            inputSize: size,
            workers,
            dtype: 'float16',
            engine,
            engineThreads: threads,
          });
          const startMs = performance.now() - t0;
          try {
            await pool.run(jobs.slice(0, workers));
            const t = performance.now();
            const c = cpuMs();
            const results = await pool.run(jobs);
            const sec = (performance.now() - t) / 1000;
            const cpuPerView = (cpuMs() - c) / results.reduce((a, r) => a + r.shape[0], 0);
            const n = results.reduce((a, r) => a + r.shape[0], 0);
            const cores = workers * threads;
            line.push(
              `${workers} worker${workers > 1 ? 's' : ''}${engine === 'ort' ? ` x ${threads} thread${threads > 1 ? 's' : ''}` : ''} ${fmt(n / sec)} img/s (cpu ${cpuPerView.toFixed(1)} ms/view -> ${fmt((cores * 1000) / cpuPerView)} img/s on ${cores} free core${cores > 1 ? 's' : ''}; start ${(startMs / 1000).toFixed(1)} s)`,
            );
          } finally {
            await pool.close();
          }
        }
        console.log(
          `boundary ${engine} alpha ${alpha} ${size}x${size} (flip + rotation views as the recipes draw, float16 out): ${line.join(' | ')}`,
        );
      }
    }
  }
}

/** CPU ms per view of each stage of the boundary forward, measured in this thread (1 engine thread). */
async function breakdown(): Promise<void> {
  const batch = 4;
  for (const alpha of alphas) {
    const weights = await weightsFor(alpha);
    if (!weights) continue;
    for (const size of sizes) {
      const imageBytes = size * size * 3;
      const img = { data: new Uint8Array(imageBytes).map((_, i) => (i * 13 + (i >> 7)) % 256), width: size, height: size };
      const px = new Float32Array(batch * imageBytes);
      const perView = async (f: () => unknown | Promise<unknown>, n = 20) => {
        for (let i = 0; i < 3; i++) await f();
        const c = cpuMs();
        for (let i = 0; i < n; i++) await f();
        return (cpuMs() - c) / n;
      };
      const rows: [string, number][] = [];
      rows.push([
        'augment (flip + 0.12 rad rotation, bilinear, into the batch)',
        await perView(() => applyAugmentation(img, { ...DRAW, zoom: 1, contrast: 1, angle: 0.12 }, px, 0)),
      ]);
      rows.push(['augment (flip + rotation + zoom + contrast)', await perView(() => applyAugmentation(img, DRAW, px, 0))]);
      rows.push(['unaugmented view into the batch (uint8 -> float32)', await perView(() => px.set(img.data, 0))]);
      const job = { pixels: new Uint8Array(batch * imageBytes), views: Array<AugmentDraw>(batch).fill(DRAW) };
      rows.push(['job to the worker (structured clone of its pixels)', (await perView(() => structuredClone(job))) / batch]);
      const model = baseFromWeights(weights, { alpha, inputSize: size });
      for (const engine of engines) {
        const e = await createEngine(model, engine, { outputs: [DEFAULT_BOUNDARY], threads: 1, float16Outputs: true });
        for (let i = 0; i < batch; i++) px.set(img.data, i * imageBytes);
        const [out] = await e.run(px, batch);
        const rowLen = out.data.length / batch;
        rows.push([
          `${engine} run to ${DEFAULT_BOUNDARY}, batch ${batch}, float32 out`,
          (await perView(() => e.run(px, batch), 8)) / batch,
        ]);
        if (e.runMixed) {
          const mixed = e.runMixed.bind(e);
          rows.push([
            `${engine} run, float16 out (a Cast in the graph)`,
            (await perView(() => mixed(px, batch, [DEFAULT_BOUNDARY], [DEFAULT_BOUNDARY]), 8)) / batch,
          ]);
        }
        rows.push(['  float32 -> float16 in JS (toFloat16)', await perView(() => toFloat16(out.data.subarray(0, rowLen)))]);
        await e.dispose();
      }
      model.dispose();
      console.log(`breakdown alpha ${alpha} ${size}x${size}, CPU ms per view (this thread; results come back transferred, not copied):`);
      for (const [k, v] of rows) console.log(`  ${k.padEnd(62)} ${v.toFixed(2).padStart(6)}`);
    }
  }
}

const info = await initBackend('wasm', () => {});
console.log(
  `backend: ${describeBackend(info)}; ${runs} runs per latency figure. Wall times depend on what else runs on the CPU; ` +
    '"cpu" is this process\'s CPU time (all threads), a proxy for an idle machine (for 1 thread: ~ the idle wall time).',
);
if (flag('breakdown')) {
  await breakdown();
  process.exit(0);
}
await latency();
if (!flag('latency-only')) {
  if (!flag('no-threaded')) {
    console.log('threaded SIMD WASM (2 threads), single-image latency, in a child process:');
    const child = spawnSync(
      process.execPath,
      [...process.execArgv, fileURLToPath(import.meta.url), ...process.argv.slice(2), '--latency-only'],
      {
        env: { ...process.env, EDGETUNE_WASM_THREADS: '2' },
        encoding: 'utf8',
        stdio: ['ignore', 'pipe', 'inherit'],
      },
    );
    process.stdout.write(`${child.stdout.trimEnd().replace(/^/gm, '  ')}\n`);
    if (child.status !== 0) console.log(`  (threaded child exited with ${child.status ?? child.signal})`);
  }
  await throughput();
}
