// The CPU a run computed on, for the manifest: results are bit-for-bit reproducible only for the
// same engine, thread setting and instruction set (onnxruntime and XNNPACK pick kernels by ISA).
import { readFileSync } from 'node:fs';
import os from 'node:os';

export interface CpuInfo {
  model: string;
  arch: string;
  cores: number;
  /** The SIMD extensions kernels are chosen by (x86: sse4_2 ... avx512*, amx*; arm: asimd, sve ...). */
  isa: string[];
}

const KNOWN = /^(sse4_1|sse4_2|avx|avx2|fma|f16c|avx512\w*|amx\w*|avx_vnni|asimd|asimdhp|asimddp|sve|sve2|i8mm|bf16|fphp)$/;

/** Cores this process may use (os.availableParallelism where Node has it), at least 1. */
export function availableCores(): number {
  return Math.max(1, os.availableParallelism?.() ?? os.cpus().length);
}

export function cpuInfo(): CpuInfo {
  const cpus = os.cpus();
  let flags: string[] = [];
  try {
    const text = readFileSync('/proc/cpuinfo', 'utf8');
    const line = text.split('\n').find((l) => /^(flags|Features)\s*:/.test(l));
    flags = line ? line.split(':')[1].trim().split(/\s+/) : [];
  } catch {
    // not Linux: the ISA stays unknown (empty)
  }
  return {
    model: cpus[0]?.model.trim() ?? 'unknown',
    arch: process.arch,
    cores: availableCores(),
    isa: [...new Set(flags.filter((f) => KNOWN.test(f)))].sort(),
  };
}
