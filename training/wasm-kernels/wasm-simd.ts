// Three WebAssembly SIMD loops that run in place on the tfjs WASM backend's heap: a tiny module,
// assembled here byte by byte (no toolchain needed), imports the backend's own memory, so the
// gradient kernels pass heap byte offsets and nothing is copied. Used where XNNPACK has no kernel
// and a plain JS loop is the bottleneck (the depthwise filter gradient, the ReLU6 gradient), or where
// tfjs runs a dozen kernels per variable (Adam's update).

import {
  c32,
  endAt,
  F32,
  f32,
  get,
  I32,
  memarg,
  name,
  op,
  section,
  set,
  simd,
  tee,
  uleb,
  V128,
  vec,
  whileBelow,
} from './wasm-assembler.js';

export interface SimdLoops {
  /** acc[i] += x[i] * d[i] for i < n (float32; arguments are byte offsets into the heap). */
  mulAcc(acc: number, x: number, d: number, n: number): void;
  /** out[i] = 0 < y[i] < 6 ? dy[i] : 0 for i < n (NaN -> 0). */
  relu6Grad(out: number, dy: number, y: number, n: number): void;
  /**
   * Adam's update of n float32 weights, written to wOut, mOut, vOut (byte offsets), each step
   * rounded to float32 exactly as tfjs' AdamOptimizer computes it:
   *   m' = m * b1 + g * c1;  v' = v * b2 + (g * g) * c2;
   *   w' = ((m' / oma1) / (sqrt(v' / oma2) + eps)) * negLr + w
   */
  adam(
    wOut: number,
    mOut: number,
    vOut: number,
    w: number,
    g: number,
    m: number,
    v: number,
    n: number,
    b1: number,
    c1: number,
    b2: number,
    c2: number,
    oma1: number,
    oma2: number,
    eps: number,
    negLr: number,
  ): void;
}

/**
 * A loop over elements with 4 params (p0, p1, p2: byte pointers, p0 the output; n: element count):
 * `body4` handles 4 floats (SIMD) while p0 < end4, then `body1` one float while p0 < end.
 * Locals: 0..3 params, 4 = end of the SIMD part, 5 = end.
 */
function pointerLoop(body4: number[], body1: number[]): number[] {
  const [p0, p1, p2, n, end4, end] = [0, 1, 2, 3, 4, 5];
  const code = [
    ...endAt(p0, [...get(n), ...c32(-4), op.i32And]),
    ...set(end4),
    ...endAt(p0, get(n)),
    ...set(end),
    ...whileBelow(p0, [p1, p2], end4, body4, 16),
    ...whileBelow(p0, [p1, p2], end, body1, 4),
    op.end,
  ];
  const locals = vec([[2, I32]]); // end4, end
  const body = [...locals, ...code];
  return [...uleb(body.length), ...body];
}

const loadV = (ptr: number) => [...get(ptr), ...simd.load, ...memarg];
const loadF = (ptr: number) => [...get(ptr), op.f32Load, ...memarg];
const splat = (v: number) => [op.f32Const, ...f32(v), ...simd.f32x4Splat];
const constF = (v: number) => [op.f32Const, ...f32(v)];

// mulAcc(acc, x, d, n): acc += x * d
const mulAcc = pointerLoop(
  [...get(0), ...loadV(0), ...loadV(1), ...loadV(2), ...simd.f32x4Mul, ...simd.f32x4Add, ...simd.store, ...memarg],
  [...get(0), ...loadF(0), ...loadF(1), ...loadF(2), op.f32Mul, op.f32Add, op.f32Store, ...memarg],
);

// relu6Grad(out, dy, y, n): out = dy & (y > 0) & (y < 6); vector comparisons give all-ones lanes.
const relu6Grad = pointerLoop(
  [
    ...[...get(0), ...loadV(1)],
    ...[...loadV(2), ...splat(0), ...simd.f32x4Gt, ...simd.and],
    ...[...loadV(2), ...splat(6), ...simd.f32x4Lt, ...simd.and],
    ...[...simd.store, ...memarg],
  ],
  [
    ...[...get(0), ...loadF(1), ...constF(0)],
    ...[...loadF(2), ...constF(0), op.f32Gt, ...loadF(2), ...constF(6), op.f32Lt, op.i32And],
    ...[op.select, op.f32Store, ...memarg],
  ],
);

/**
 * adam(wOut, mOut, vOut, w, g, m, v, n, b1, c1, b2, c2, oma1, oma2, eps, negLr): locals 0..6 the
 * pointers, 7 n, 8..15 the scalars, 16..23 the scalars splatted, 24/25 m'/v' (v128), 26 end4,
 * 27 end, 28/29 m'/v' (f32).
 */
function adamLoop(): number[] {
  const [wOut, mOut, vOut, w, g, m, v, n] = [0, 1, 2, 3, 4, 5, 6, 7];
  const scalar = (k: number) => 8 + k; // b1 c1 b2 c2 oma1 oma2 eps negLr
  const splatted = (k: number) => 16 + k;
  const [end4, end] = [26, 27];
  const [B1, C1, B2, C2, OMA1, OMA2, EPS, NLR] = [0, 1, 2, 3, 4, 5, 6, 7];
  const others = [mOut, vOut, w, g, m, v];
  // One body for both widths: `l` loads, `k` reads a constant, `o` maps an op to its width.
  const body = (wide: boolean) => {
    const l = wide ? loadV : loadF;
    const k = (c: number) => get(wide ? splatted(c) : scalar(c));
    const [mNew, vNew] = wide ? [24, 25] : [28, 29];
    const [mul, add, div, sqrt] = wide
      ? [simd.f32x4Mul, simd.f32x4Add, simd.f32x4Div, simd.f32x4Sqrt]
      : [[op.f32Mul], [op.f32Add], [op.f32Div], [op.f32Sqrt]];
    const store = wide ? [...simd.store, ...memarg] : [op.f32Store, ...memarg];
    return [
      // m' = m * b1 + g * c1
      ...[...get(mOut), ...l(m), ...k(B1), ...mul, ...l(g), ...k(C1), ...mul, ...add, ...tee(mNew), ...store],
      // v' = v * b2 + (g * g) * c2
      ...[...get(vOut), ...l(v), ...k(B2), ...mul, ...l(g), ...l(g), ...mul, ...k(C2), ...mul, ...add, ...tee(vNew), ...store],
      // w' = ((m' / oma1) / (sqrt(v' / oma2) + eps)) * negLr + w
      ...[...get(wOut), ...get(mNew), ...k(OMA1), ...div, ...get(vNew), ...k(OMA2), ...div, ...sqrt, ...k(EPS), ...add],
      ...[...div, ...k(NLR), ...mul, ...l(w), ...add, ...store],
    ];
  };
  const code = [
    ...Array.from({ length: 8 }, (_, c) => [...get(scalar(c)), ...simd.f32x4Splat, ...set(splatted(c))]).flat(),
    ...endAt(wOut, [...get(n), ...c32(-4), op.i32And]),
    ...set(end4),
    ...endAt(wOut, get(n)),
    ...set(end),
    ...whileBelow(wOut, others, end4, body(true), 16),
    ...whileBelow(wOut, others, end, body(false), 4),
    op.end,
  ];
  const locals = vec([
    [10, V128],
    [2, I32],
    [2, F32],
  ]);
  const fn = [...locals, ...code];
  return [...uleb(fn.length), ...fn];
}

function moduleBytes(shared: boolean): Uint8Array {
  const fnType = [0x60, ...vec([[I32], [I32], [I32], [I32]]), 0x00];
  const adamType = [0x60, ...vec([...Array(8).fill([I32]), ...Array(8).fill([F32])]), 0x00];
  // Memory import limits: min 1 page; a shared memory must declare a maximum (4 GiB covers any).
  const limits = shared ? [0x03, 0x01, ...uleb(65536)] : [0x00, 0x01];
  return new Uint8Array([
    0x00,
    0x61,
    0x73,
    0x6d,
    0x01,
    0x00,
    0x00,
    0x00,
    ...section(1, vec([fnType, adamType])),
    ...section(2, vec([[...name('env'), ...name('memory'), 0x02, ...limits]])),
    ...section(3, vec([[0x00], [0x00], [0x01]])),
    ...section(
      7,
      vec([
        [...name('mulAcc'), 0x00, 0x00],
        [...name('relu6Grad'), 0x00, 0x01],
        [...name('adam'), 0x00, 0x02],
      ]),
    ),
    ...section(10, [...uleb(3), ...mulAcc, ...relu6Grad, ...adamLoop()]),
  ]);
}

const cache = new WeakMap<WebAssembly.Memory, SimdLoops | null>();

/** The loops bound to `memory`, or undefined where WebAssembly SIMD is not available. */
export function simdLoops(memory: WebAssembly.Memory): SimdLoops | undefined {
  const known = cache.get(memory);
  if (known !== undefined) return known ?? undefined;
  let loops: SimdLoops | null = null;
  try {
    const shared = typeof SharedArrayBuffer !== 'undefined' && memory.buffer instanceof SharedArrayBuffer;
    const mod = new WebAssembly.Module(moduleBytes(shared) as Uint8Array<ArrayBuffer>);
    const inst = new WebAssembly.Instance(mod, { env: { memory } });
    loops = inst.exports as unknown as SimdLoops;
  } catch {
    loops = null;
  }
  cache.set(memory, loops);
  return loops ?? undefined;
}
