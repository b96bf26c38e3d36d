// The line every timing bench prints first: which CPU the figures come from. Sessions here land on
// different hosts (an AMD EPYC and an Intel Xeon, both 2 vCPUs with AVX-512, about 2x apart on
// sharp's JPEG decode), so a figure without its CPU cannot be compared with another.
import os from 'node:os';
import { cpuInfo } from '../core/engine/cpu.js';

const SHOWN = ['avx2', 'avx512f', 'avx512_bf16', 'avx512_fp16', 'amx_tile', 'asimd', 'sve'];

export function machineLine(): string {
  const cpu = cpuInfo();
  const isa = cpu.isa.filter((f) => SHOWN.includes(f));
  const load = os
    .loadavg()
    .map((l) => l.toFixed(1))
    .join(' ');
  return `machine: ${cpu.model} (${cpu.arch}, ${cpu.cores} cores${isa.length ? `, ${isa.join(' ')}` : ''}); load average ${load}`;
}
