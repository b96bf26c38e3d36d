// tfjs' threaded SIMD WASM build under Node, kept out of core/backend.ts so that serving (every
// Lambda cold start loads backend.ts) never loads it; backend.ts imports it only for threads > 1.
import { mkdirSync, renameSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import os from 'node:os';
import path from 'node:path';
import { tf, tfWasm } from './tf.js';
import { wasmPthreadWorkers, withEmscriptenConfig } from './tfjs-internals.js';

const require = createRequire(import.meta.url);

/**
 * tfjs' threaded SIMD build in Node. tfjs hard-wires three browser-only things that this works around,
 * for the duration of the backend start only:
 * - WASM_HAS_MULTITHREAD_SUPPORT is false whenever IS_NODE: the flag is set explicitly;
 * - the pthread worker script and the main script are handed to emscripten as Blob URLs, which Node's
 *   worker_threads cannot load: they are written to a temp folder and their paths substituted (the
 *   emscripten module config is a fresh object whose fields tfjs assigns, so a transient setter on
 *   Object.prototype sees the assignment);
 * - the XNNPACK pool is sized at static init as os.cpus().length / 2 (a hyper-threading guess that
 *   gives 1 on a 2-vCPU machine): os.cpus() reports 2 x threads entries meanwhile.
 * The pthread workers are unref'd so they never keep the process alive.
 */
export async function startThreadedWasm(threads: number): Promise<boolean> {
  const { wasmWorkerContents } = require('@tensorflow/tfjs-backend-wasm/wasm-out/tfjs-backend-wasm-threaded-simd.worker.js') as {
    wasmWorkerContents: string;
  };
  const factory = require('@tensorflow/tfjs-backend-wasm/wasm-out/tfjs-backend-wasm-threaded-simd.js') as () => unknown;
  const dir = path.join(os.tmpdir(), `edgetune-wasm-pthread-${tf.version_core}`);
  mkdirSync(dir, { recursive: true });
  const workerFile = path.join(dir, 'pthread-worker.cjs');
  const mainFile = path.join(dir, 'pthread-main.cjs');
  const write = (file: string, text: string) => {
    writeFileSync(`${file}.tmp`, text);
    renameSync(`${file}.tmp`, file);
  };
  // tfjs escapes newlines the same way before making its Blob: they sit inside string literals.
  write(workerFile, wasmWorkerContents.replace(/\n/g, '\\n'));
  write(mainFile, `var WasmBackendModuleThreadedSimd = ${factory.toString()}`);

  const osModule = require('node:os') as typeof os;
  const realCpus = osModule.cpus;
  osModule.cpus = () => {
    const cpus = realCpus();
    return Array.from({ length: threads * 2 }, (_, i) => cpus[i % cpus.length]);
  };
  try {
    return await withEmscriptenConfig(
      {
        mainScriptUrlOrBlob: () => mainFile,
        locateFile: (fn) => (p: string, prefix: string) =>
          p.endsWith('.worker.js') ? workerFile : (fn as (p: string, prefix: string) => string)(p, prefix),
      },
      async () => {
        tf.env().set('WASM_HAS_MULTITHREAD_SUPPORT', true);
        tfWasm.setThreadsCount(threads);
        const ok = await tf.setBackend('wasm');
        if (!ok) return false;
        const workers = wasmPthreadWorkers();
        if (!workers) throw new Error('the threaded module did not load');
        for (const w of workers) (w as { unref?: () => void }).unref?.();
        return true;
      },
    );
  } finally {
    osModule.cpus = realCpus;
  }
}
