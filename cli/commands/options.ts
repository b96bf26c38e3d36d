import { InvalidArgumentError } from 'commander';
import { edgetuneConfig } from '../../core/config.js';

export function num(name: string) {
  return (v: string): number => {
    const n = Number(v);
    if (!Number.isFinite(n)) throw new InvalidArgumentError(`${name} must be a number; got '${v}'`);
    return n;
  };
}

export function int(name: string) {
  return (v: string): number => {
    const n = Number(v);
    if (!Number.isInteger(n)) throw new InvalidArgumentError(`${name} must be an integer; got '${v}'`);
    return n;
  };
}

/** EDGETUNE_DEBUG, where an invalid environment must not hide the error being reported. */
function debugEnabled(): boolean {
  try {
    return edgetuneConfig().EDGETUNE_DEBUG;
  } catch {
    return !!process.env.EDGETUNE_DEBUG;
  }
}

/** Runs a command body; a thrown error becomes one clear line and exit code 1, not a stack trace. */
export async function run(body: () => Promise<void>): Promise<void> {
  try {
    await body();
  } catch (e) {
    const err = e as Error;
    process.stderr.write(`edgetune: ${err.message}\n`);
    if (debugEnabled()) process.stderr.write(`${err.stack}\n`);
    process.exitCode = 1;
  }
}

/** `--engine`: sets EDGETUNE_ENGINE for this process and its workers (core/engine). */
export function engineOption(v: string): 'auto' | 'wasm' | 'ort' {
  if (v !== 'auto' && v !== 'wasm' && v !== 'ort') throw new InvalidArgumentError(`engine must be wasm, ort or auto; got '${v}'`);
  return v;
}
export const TRAIN_ENGINE_HELP =
  'frozen-layer workers: auto (default: onnxruntime-node on the CPU when it loads, else tfjs wasm), ort or wasm [EDGETUNE_ENGINE]';
export const ENGINE_HELP =
  'inference engine: auto (default: onnxruntime-node on the CPU when it loads, else tfjs wasm), ort or wasm [EDGETUNE_ENGINE]';
