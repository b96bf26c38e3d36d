// The one door to tfjs private internals. Everything here reaches past tfjs' public API (backend
// fields, kernel calls with untyped attributes, optimizer fields): it was written against the
// versions in TFJS_VERSION and package.json pins them exactly, so an upgrade is a deliberate step
// that re-runs the parity tests (fast-tail, wasm-grad-kernels, backend-threads, train) rather
// than a silent change under `^4.x`. assertTfjsVersion() runs when a backend starts.
import type { NamedTensorMap, Optimizer, Tensor, TensorInfo } from '@tensorflow/tfjs';
import { tf, tfWasm } from './tf.js';

/** The tfjs release every function below was written and tested against. */
export const TFJS_VERSION = '4.22.0';

/** Throws a clear error when the installed tfjs packages are not the release this module targets. */
export function assertTfjsVersion(
  installed: Record<string, string> = {
    '@tensorflow/tfjs': tf.version.tfjs,
    '@tensorflow/tfjs-core': tf.version['tfjs-core'],
    '@tensorflow/tfjs-layers': tf.version['tfjs-layers'],
    '@tensorflow/tfjs-backend-cpu': tf.version['tfjs-backend-cpu'],
    '@tensorflow/tfjs-backend-wasm': tfWasm.version_wasm,
  },
): void {
  const wrong = Object.entries(installed).filter(([, v]) => v !== TFJS_VERSION);
  if (!wrong.length) return;
  throw new Error(
    `edgetune relies on tfjs ${TFJS_VERSION} internals (core/tfjs-internals.ts), but found ${wrong
      .map(([p, v]) => `${p} ${v}`)
      .join(', ')}: install the pinned versions (npm ci), or port core/tfjs-internals.ts and re-run the parity tests`,
  );
}

/** The subset of the WASM backend's class used by the fast kernels (tfjs does not export its type). */
export interface WasmBackendInternals {
  dataIdMap: { get(dataId: object): { memoryOffset: number } };
  /** The emscripten module: its memory is `asm.memory` (single-thread build) or `wasmMemory` (threaded build). */
  wasm: {
    asm?: { memory?: WebAssembly.Memory };
    wasmMemory?: WebAssembly.Memory;
    PThread?: { unusedWorkers: unknown[]; pthreads?: Record<string, unknown>; runningWorkers?: unknown[] };
  };
  makeOutput(shape: number[], dtype: string): TensorInfo;
  disposeData(dataId: object, force?: boolean): boolean;
  typedArrayFromHeap(info: TensorInfo): Float32Array;
}

/** The subset of the cpu backend's class used by the fused kernels' cpu fallback. */
export interface CpuBackendInternals {
  data: { get(dataId: object): { values: Float32Array } };
  makeTensorInfo(shape: number[], dtype: string, values: Float32Array): TensorInfo;
}

export function wasmInternals(backend: unknown): WasmBackendInternals {
  return backend as WasmBackendInternals;
}

export function cpuInternals(backend: unknown): CpuBackendInternals {
  return backend as CpuBackendInternals;
}

/** The WASM module's memory (either build), if `backend` is the WASM backend. */
export function wasmMemory(backend: unknown): WebAssembly.Memory | undefined {
  const be = wasmInternals(backend);
  return be.wasm?.asm?.memory ?? be.wasm?.wasmMemory;
}

/**
 * Makes each tensor resident in the WASM heap (the backend moves a tensor created on another
 * backend lazily, on first access, and that allocation can grow the memory and detach views).
 */
export function makeResident(backend: unknown, tensors: readonly TensorInfo[]): void {
  const be = wasmInternals(backend);
  for (const t of tensors) be.dataIdMap.get(t.dataId);
}

/** Byte offset of a resident tensor's data in the WASM heap. */
export function heapOffset(backend: unknown, t: TensorInfo): number {
  return wasmInternals(backend).dataIdMap.get(t.dataId).memoryOffset;
}

/** The pthread workers of the threaded WASM build, or undefined when the single-thread build runs. */
export function wasmPthreadWorkers(): unknown[] | undefined {
  const pthread = wasmInternals(tf.backend()).wasm?.PThread;
  if (!pthread) return undefined;
  return [...pthread.unusedWorkers, ...Object.values(pthread.pthreads ?? {}), ...(pthread.runningWorkers ?? [])];
}

/**
 * Values [start, end) of a tensor's flat data: the WASM backend reads a range straight from its
 * heap (one copy instead of slice + read); other backends read all and copy the range.
 */
export function readRangeSync(t: Tensor, start: number, end: number): Float32Array | Int32Array {
  const be = tf.backend() as unknown as { readSync(dataId: object, start?: number, end?: number): Float32Array | Int32Array };
  if (tf.getBackend() === 'wasm') return be.readSync(t.dataId, start, end);
  return (t.dataSync() as Float32Array | Int32Array).slice(start, end);
}

/**
 * Runs a registered kernel (fused or one of the project's own) directly: tfjs' op wrappers do not
 * expose these, and their attributes are untyped.
 */
export function runKernel<T extends Tensor = Tensor>(name: string, inputs: Record<string, Tensor>, attrs: Record<string, unknown> = {}): T {
  return tf.engine().runKernel(name, inputs as unknown as NamedTensorMap, attrs as never) as T;
}

/** tfjs' Adam reads its `learningRate` field on every step; there is no public setter. */
export function setLearningRate(optimizer: Optimizer, lr: number): void {
  (optimizer as unknown as { learningRate: number }).learningRate = lr;
}

type AdamPowers = { accBeta1?: tf.Variable; accBeta2?: tf.Variable };

/**
 * Adam's running products beta1^t and beta2^t (its private accBeta1/accBeta2), or undefined for
 * another optimizer. setWeights recomputes them as pow(beta, t + 1), which differs from the
 * running product in the last float32 bits: a checkpoint keeps these to resume bit for bit.
 */
export function adamPowers(optimizer: Optimizer): [number, number] | undefined {
  const o = optimizer as unknown as AdamPowers;
  if (!o.accBeta1 || !o.accBeta2) return undefined;
  return [o.accBeta1.dataSync()[0], o.accBeta2.dataSync()[0]];
}

export function setAdamPowers(optimizer: Optimizer, powers: readonly [number, number]): void {
  const o = optimizer as unknown as AdamPowers;
  if (!o.accBeta1 || !o.accBeta2) throw new Error('setAdamPowers: not an Adam optimizer');
  tf.tidy(() => {
    o.accBeta1?.assign(tf.scalar(powers[0]));
    o.accBeta2?.assign(tf.scalar(powers[1]));
  });
}

/**
 * Runs `start` with transient setters on Object.prototype that capture `fields` when tfjs assigns
 * them to the (fresh) emscripten module config object, replacing each value with `fields[k](value)`.
 * The setters are removed afterwards, also on failure.
 */
export async function withEmscriptenConfig<T>(fields: Record<string, (value: unknown) => unknown>, start: () => Promise<T>): Promise<T> {
  const proto = Object.prototype as Record<string, unknown>;
  const own = (obj: object, key: string, value: unknown) =>
    Object.defineProperty(obj, key, { value, writable: true, configurable: true, enumerable: true });
  for (const [key, map] of Object.entries(fields)) {
    Object.defineProperty(proto, key, {
      configurable: true,
      set(this: object, value: unknown) {
        own(this, key, map(value));
      },
    });
  }
  try {
    return await start();
  } finally {
    for (const key of Object.keys(fields)) delete proto[key];
  }
}
