// npm run bench:float16: the float16 <-> float32 conversion of the activation caches, on
// WebAssembly SIMD (what runs) and as the plain JS loops (the reference), per phase-2 batch: 32
// boundary rows at 224 (14 x 14 x 576) and at 160 (10 x 10 x 576).

import { halfConverter } from '../training/wasm-kernels/half-simd.js';
import { fromFloat16, fromFloat16Scalar, toFloat16, toFloat16Scalar } from '../training/workers/boundary-float16.js';
import { machineLine } from './machine.js';

console.log(machineLine());

const reps = 30;
const time = (fn: () => void) => {
  for (let i = 0; i < 3; i++) fn();
  const t = performance.now();
  for (let i = 0; i < reps; i++) fn();
  return (performance.now() - t) / reps;
};
console.log(
  `bench:float16: WebAssembly SIMD ${halfConverter() ? 'available' : 'NOT available (the JS loops run)'}; ms per batch, mean of ${reps}`,
);
for (const [label, n] of [
  ['224, 32 x 14x14x576', 32 * 14 * 14 * 576],
  ['160, 32 x 10x10x576', 32 * 10 * 10 * 576],
] as const) {
  // ReLU6 outputs: about half exact zeros, the rest in (0, 6).
  const f = Float32Array.from({ length: n }, (_, i) => (Math.sin(i * 12.9898) > 0 ? 0 : Math.abs(Math.sin(i * 78.233)) * 6));
  const h = toFloat16Scalar(f);
  const out16 = new Uint16Array(n);
  const out32 = new Float32Array(n);
  console.log(
    `${label}: float16 -> float32 ${time(() => fromFloat16(h, out32)).toFixed(2)} (JS ${time(() => fromFloat16Scalar(h, out32)).toFixed(2)}); ` +
      `float32 -> float16 ${time(() => toFloat16(f, out16)).toFixed(2)} (JS ${time(() => toFloat16Scalar(f, out16)).toFixed(2)})`,
  );
}
