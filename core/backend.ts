import { createRequire } from 'node:module';
import path from 'node:path';
import { edgetuneConfig } from './config.js';
import { tf, tfWasm } from './tf.js';
import { assertTfjsVersion } from './tfjs-internals.js';

export type BackendName = 'tensorflow-gpu' | 'tensorflow' | 'wasm' | 'cpu';
export type BackendPreference = 'auto' | 'node-gpu' | 'node' | 'wasm' | 'cpu';

export interface BackendInfo {
  /** tfjs backend name actually running (`tensorflow` for tfjs-node and tfjs-node-gpu). */
  backend: string;
  /** What was loaded, for logs and manifests: `tfjs-node-gpu`, `tfjs-node`, `wasm`, `cpu`. */
  name: BackendName;
  simd?: boolean;
  /** XNNPACK threads of the WASM module actually running. */
  threads?: number;
  reason?: string;
}

export interface InitBackendOptions {
  /**
   * WASM threads. 1 (default, or `EDGETUNE_WASM_THREADS`) uses the single-thread SIMD build; more
   * starts tfjs' threaded SIMD build under Node (emscripten pthreads on worker_threads), which tfjs
   * itself disables in Node. Falls back to 1 thread if it cannot start.
   */
  wasmThreads?: number;
  /** Folder of the tfjs .wasm binaries (default: EDGETUNE_WASM_DIR, else node_modules); bundles pass their own folder. */
  wasmDir?: string;
}

const require = createRequire(import.meta.url);
let current: BackendInfo | undefined;

/** Folder holding the tfjs WASM binaries: next to a bundle, or inside node_modules. */
export function wasmDir(dir?: string): string {
  const configured = dir ?? edgetuneConfig().EDGETUNE_WASM_DIR;
  if (configured) return configured;
  return path.dirname(require.resolve('@tensorflow/tfjs-backend-wasm/dist/tfjs-backend-wasm-simd.wasm'));
}

async function tryNative(pkg: '@tensorflow/tfjs-node-gpu' | '@tensorflow/tfjs-node'): Promise<boolean> {
  try {
    // Only the GPU container installs these; locally the import fails and we move on.
    await import(pkg);
    return await tf.setBackend('tensorflow');
  } catch {
    return false;
  }
}

async function tryWasm(threads: number, log: (line: string) => void, folder?: string): Promise<boolean> {
  try {
    const dir = wasmDir(folder);
    tfWasm.setWasmPaths(dir.endsWith(path.sep) ? dir : dir + path.sep);
    let ok: boolean;
    if (threads > 1) {
      // Loaded only here: serving never starts the threaded build.
      const { startThreadedWasm } = await import('./wasm-threads.js');
      ok = await startThreadedWasm(threads).catch((e) => {
        log(`edgetune: threaded WASM could not start (${(e as Error).message}); using 1 thread`);
        return false;
      });
      if (ok && tf.getBackend() === 'wasm') return true;
      tf.env().set('WASM_HAS_MULTITHREAD_SUPPORT', false);
    }
    tfWasm.setThreadsCount(1);
    ok = await tf.setBackend('wasm');
    // setBackend resolves false (and leaves tfjs on cpu) when the module cannot start: check it.
    return ok && tf.getBackend() === 'wasm';
  } catch {
    return false;
  }
}

/**
 * Selects the fastest backend available (tfjs-node-gpu, tfjs-node, WASM, then cpu) and says which.
 * `EDGETUNE_BACKEND` overrides the preference.
 */
export async function initBackend(
  prefer: BackendPreference = edgetuneConfig().EDGETUNE_BACKEND ?? 'auto',
  log: (line: string) => void = (l) => console.error(l),
  opts: InitBackendOptions = {},
): Promise<BackendInfo> {
  assertTfjsVersion();
  const wasmThreads = Math.max(1, Math.floor(opts.wasmThreads ?? edgetuneConfig().EDGETUNE_WASM_THREADS ?? 1));
  if (current && (prefer === 'auto' || current.name.startsWith(prefer.replace('node', 'tensorflow')))) {
    return current;
  }
  const order: BackendName[] =
    prefer === 'auto'
      ? ['tensorflow-gpu', 'tensorflow', 'wasm', 'cpu']
      : prefer === 'node-gpu'
        ? ['tensorflow-gpu', 'tensorflow', 'wasm', 'cpu']
        : prefer === 'node'
          ? ['tensorflow', 'wasm', 'cpu']
          : prefer === 'wasm'
            ? ['wasm', 'cpu']
            : ['cpu'];
  for (const name of order) {
    let ok = false;
    if (name === 'tensorflow-gpu') ok = await tryNative('@tensorflow/tfjs-node-gpu');
    else if (name === 'tensorflow') ok = await tryNative('@tensorflow/tfjs-node');
    else if (name === 'wasm') ok = await tryWasm(wasmThreads, log, opts.wasmDir);
    else ok = await tf.setBackend('cpu');
    if (!ok) continue;
    await tf.ready();
    current = { backend: tf.getBackend(), name };
    if (name === 'wasm') {
      current.simd = (await tf.env().getAsync('WASM_HAS_SIMD_SUPPORT')) as boolean;
      current.threads = tfWasm.getThreadsCount();
    }
    if (name === 'cpu') {
      current.reason =
        prefer === 'cpu'
          ? 'requested'
          : 'no faster backend could start; the cpu backend is ~20x slower and its convolution gradients are naive loops';
    }
    log(`edgetune: tfjs backend ${describeBackend(current)}`);
    return current;
  }
  throw new Error('no tfjs backend could be initialised');
}

export function describeBackend(b: BackendInfo): string {
  if (b.name === 'wasm') {
    const n = b.threads ?? 1;
    return `wasm (${b.simd ? 'SIMD' : 'no SIMD'}, ${n} thread${n === 1 ? '' : 's'}${n > 1 ? ', threaded build' : ''})`;
  }
  if (b.name === 'tensorflow-gpu') return 'tensorflow (tfjs-node-gpu, CUDA)';
  if (b.name === 'tensorflow') return 'tensorflow (tfjs-node, CPU)';
  return `cpu (${b.reason ?? 'requested'})`;
}

export function currentBackend(): BackendInfo | undefined {
  return current;
}
