// npm run bench:anchor-latency: single-image latency, PyTorch's optimized graph (bench/anchor/latency.py:
// traced, frozen, optimize_for_inference) beside ours on onnxruntime-node (bench:forward's latency rows),
// the same threads, one after the other on this machine. Says plainly when PyTorch is absent.
//
//   npm run bench:anchor-latency                      # alpha 1.0 and 0.35, at 224 and 160, 1 and 2 threads
import { spawnSync } from 'node:child_process';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { machineLine } from './machine.js';

console.log(machineLine());

const repo = path.resolve(import.meta.dirname, '..');
const PYTHON = process.env.ANCHOR_PYTHON ?? '/usr/bin/python3';
const { values } = parseArgs({ options: { alphas: { type: 'string', default: '1,0.35' }, sizes: { type: 'string', default: '224,160' } } });

const torch = spawnSync(PYTHON, ['latency.py', '--alphas', values.alphas, '--sizes', values.sizes], {
  cwd: path.join(repo, 'bench/anchor'),
  encoding: 'utf8',
});
if (torch.status !== 0) {
  console.log(
    `PyTorch latency did not run with ${PYTHON} (apt-get install python3-torch python3-torchvision):\n${torch.stderr.slice(-2000)}`,
  );
} else {
  console.log(
    `PyTorch ${spawnSync(PYTHON, ['-c', 'import torch; print(torch.__version__)'], { encoding: 'utf8' }).stdout.trim()}, optimize_for_inference, 1x3xHxW float32:`,
  );
  for (const line of torch.stdout.trim().split('\n')) {
    const r = JSON.parse(line) as { alpha: number; size: number; threads: number; p50Ms: number; minMs: number };
    console.log(
      `  torch alpha ${r.alpha} ${r.size}x${r.size} ${r.threads} thread(s): p50 ${r.p50Ms.toFixed(2)} ms (min ${r.minMs.toFixed(2)})`,
    );
  }
}
console.log('ours (bench:forward latency rows; "ort 1 thread" / "ort 2 threads" are the comparable figures):');
const ours = spawnSync(
  process.execPath,
  [
    '--import',
    'tsx',
    'bench/forward.ts',
    '--alphas',
    values.alphas,
    '--sizes',
    values.sizes,
    '--engine',
    'ort',
    '--latency-only',
    '--no-threaded',
    '--runs',
    '50',
  ],
  { cwd: repo, encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'] },
);
process.stdout.write(ours.stdout);
process.exit(ours.status ?? 1);
