// A second TFLite reader for cross-checks: Arm NN 20.08 (Debian's python3-pyarmnn, TfLiteParser +
// the CpuRef backend), through armnn-run.py. It cannot read the float16 variant (its parser needs
// conv weights that are constants, not DEQUANTIZE outputs), so it checks float32 and int8.
import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';

const PYTHON = '/usr/bin/python3';
const SCRIPT = path.join(path.dirname(fileURLToPath(import.meta.url)), 'armnn-run.py');
/** Where Debian's libarmnn-cpuref-backend22 puts the backend Arm NN loads at start. */
const CPUREF = '/usr/lib/x86_64-linux-gnu/armnn22/Arm_CpuRef_backend.so';

/** Why Arm NN cannot run here, or null when it can. */
export async function armnnUnavailable(): Promise<string | null> {
  if (!existsSync(PYTHON)) return `${PYTHON} not found`;
  try {
    await promisify(execFile)(PYTHON, ['-c', 'import pyarmnn'], { timeout: 30_000 });
  } catch {
    return 'python3-pyarmnn is not installed (apt-get install python3-pyarmnn libarmnn-cpuref-backend22)';
  }
  if (!existsSync(CPUREF)) return `Arm NN's CpuRef backend is not installed (${CPUREF}: apt-get install libarmnn-cpuref-backend22)`;
  return null;
}

/** Output rows of `bytes` for inputs in the model's input dtype (float32 or uint8), run by Arm NN's CpuRef backend. */
export async function runArmnn(bytes: Uint8Array, inputs: readonly (Uint8Array | Float32Array)[]): Promise<Float32Array[]> {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'edgetune-armnn-'));
  try {
    const model = path.join(dir, 'model.tflite');
    const data = path.join(dir, 'inputs.bin');
    await writeFile(model, bytes);
    await writeFile(data, Buffer.concat(inputs.map((x) => Buffer.from(x.buffer, x.byteOffset, x.byteLength))));
    const { stdout } = await promisify(execFile)(PYTHON, [SCRIPT, model, data, String(inputs.length)], {
      timeout: 300_000,
      maxBuffer: 64 << 20,
    });
    // pyarmnn prints notes about parsers it lacks before the JSON line.
    const last = stdout.trim().split('\n').pop() ?? '';
    const parsed = JSON.parse(last) as { outputs: number[][] };
    return parsed.outputs.map((r) => Float32Array.from(r));
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}
