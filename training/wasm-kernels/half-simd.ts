// float16 <-> float32 conversion as WebAssembly SIMD loops on a small memory of their own: the
// boundary caches store activations as float16, and every phase-2 batch (3.6 M values at 224) is
// widened back before the tail runs, which took ~15 ms a batch as a JS lookup-table loop. The
// arithmetic is boundary-float16.ts' (F. Giesen's half_to_float and float_to_half_fast3_rtne), and
// both give the same bits on every half and on float32 inputs (test/boundary-float16.test.ts).
import { c32, get, I32, memarg, moduleOnce, name, op, section, set, simd, tee, uleb, V128, vec, whileBelow } from './wasm-assembler.js';

/** Values per call: the float32 side fills the first 64 KiB of the module's memory, the float16 side the next 32. */
export const HALF_CHUNK = 16384;
const FLOATS_AT = 0;
const HALVES_AT = HALF_CHUNK * 4;
const PAGES = 2;

const at = (offset: number) => [memarg[0], ...uleb(offset)];
const splatI = (v: number) => [...c32(v), ...simd.i32x4Splat];
const splatF = (v: number) => [op.f32Const, ...new Uint8Array(new Float32Array([v]).buffer), ...simd.f32x4Splat];
const bits = (v: number) => new Uint32Array(new Float32Array([v]).buffer)[0];

/**
 * A function (out, src, n) running `body` while src < src + (n << srcShift), src += step (the body
 * moves out itself); locals after the params: end (i32), then `vectors` v128 locals.
 */
function srcLoop(srcShift: number, step: number, vectors: number, body: number[]): number[] {
  const [src, n, end] = [1, 2, 3];
  const code = [
    ...get(src),
    ...get(n),
    ...c32(srcShift),
    op.i32Shl,
    op.i32Add,
    ...set(end),
    ...whileBelow(src, [], end, body, step),
    op.end,
  ];
  const fn = [
    ...vec([
      [1, I32],
      [vectors, V128],
    ]),
    ...code,
  ];
  return [...uleb(fn.length), ...fn];
}

// halfToFloat(out, src, n), n a multiple of 8. Locals: 0 out, 1 src, 2 n, 3 end, 4 the 8 halves, 5 h, 6 em, 7 r.
function halfToFloatFn(): number[] {
  const [out, src, v, h, em, r] = [0, 1, 4, 5, 6, 7];
  // Rebias the exponent (twice for Inf/NaN); zero and subnormals are renormalised by a float
  // subtraction of 2^-14 on normal floats (a multiply by 2^112 would be exact too, but subnormal
  // operands take x86's slow microcode path: 4x slower on real activations).
  const widen = (extend: number[], offset: number) => [
    ...get(out),
    ...[...get(v), ...extend, ...tee(h), ...splatI(0x7fff), ...simd.and, ...set(em)],
    ...[...get(em), ...c32(13), ...simd.i32x4Shl, ...splatI(112 << 23), ...simd.i32x4Add],
    ...[...get(em), ...splatI(0x7bff), ...simd.i32x4GtS, ...splatI(112 << 23), ...simd.and, ...simd.i32x4Add, ...set(r)],
    ...[...get(r), ...splatI(1 << 23), ...simd.i32x4Add, ...splatF(2 ** -14), ...simd.f32x4Sub, ...get(r)],
    ...[...get(em), ...splatI(0x400), ...simd.i32x4LtS, ...simd.bitselect],
    ...[...get(h), ...get(em), ...simd.xor, ...c32(16), ...simd.i32x4Shl, ...simd.or],
    // NaNs come out quiet, as a float32 read through a JS number does.
    ...[...get(em), ...splatI(0x7c00), ...simd.i32x4GtS, ...splatI(0x400000), ...simd.and, ...simd.or],
    ...simd.store,
    ...at(offset),
  ];
  const body = [
    ...[...get(src), ...simd.load, ...at(0), ...set(v)],
    ...widen(simd.i32x4ExtendLowI16x8U, 0),
    ...widen(simd.i32x4ExtendHighI16x8U, 16),
    ...[...get(out), ...c32(32), op.i32Add, ...set(out)],
  ];
  return srcLoop(1, 16, 4, body);
}

// floatToHalf(out, src, n), n a multiple of 8, rounding to nearest even. Locals: 0 out, 1 src, 2 n, 3 end, 4 x, 5 u.
function floatToHalfFn(): number[] {
  const [out, src, x, u] = [0, 1, 4, 5];
  const denormMagic = 0.5; // (127 - 15 + 23 - 10 + 1) << 23
  const narrow = (offset: number) => [
    ...[...get(src), ...simd.load, ...at(offset), ...tee(x), ...splatI(0x7fffffff), ...simd.and, ...set(u)],
    // At or above 65536: Inf, or NaN (quiet) when u is above Inf's bits.
    ...[...splatI(0x7e00), ...splatI(0x7c00), ...get(u), ...splatI(0x7f800000), ...simd.i32x4GtS, ...simd.bitselect],
    // Below the smallest normal half: adding 0.5 aligns the 10 subnormal bits (float32 addition rounds to even).
    ...[...get(u), ...splatF(denormMagic), ...simd.f32x4Add, ...splatI(bits(denormMagic)), ...simd.i32x4Sub],
    // Normal: rebias, round half to even on the 13 dropped bits.
    ...[...get(u), ...splatI(((15 - 127) << 23) + 0xfff), ...simd.i32x4Add],
    ...[...get(u), ...c32(13), ...simd.i32x4ShrU, ...splatI(1), ...simd.and, ...simd.i32x4Add, ...c32(13), ...simd.i32x4ShrU],
    ...[...get(u), ...splatI(113 << 23), ...simd.i32x4LtS, ...simd.bitselect],
    ...[...get(u), ...splatI((127 + 16) << 23), ...simd.i32x4GeS, ...simd.bitselect],
    ...[...get(x), ...c32(16), ...simd.i32x4ShrU, ...splatI(0x8000), ...simd.and, ...simd.or],
  ];
  const body = [
    ...get(out),
    ...narrow(0),
    ...narrow(16),
    ...simd.i16x8NarrowI32x4U,
    ...simd.store,
    ...at(0),
    ...[...get(out), ...c32(16), op.i32Add, ...set(out)],
  ];
  return srcLoop(2, 32, 2, body);
}

function moduleBytes(): Uint8Array {
  const fnType = [0x60, ...vec([[I32], [I32], [I32]]), 0x00];
  return new Uint8Array([
    ...[0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00],
    ...section(1, vec([fnType])),
    ...section(3, vec([[0x00], [0x00]])),
    ...section(5, vec([[0x00, PAGES]])),
    ...section(
      7,
      vec([
        [...name('memory'), 0x02, 0x00],
        [...name('halfToFloat'), 0x00, 0x00],
        [...name('floatToHalf'), 0x00, 0x01],
      ]),
    ),
    ...section(10, [...uleb(2), ...halfToFloatFn(), ...floatToHalfFn()]),
  ]);
}

export interface HalfConverter {
  /** out[i] = the float32 value of the half src[i] (exact). Both arrays hold n values. */
  toFloat32(src: Uint16Array, out: Float32Array, n: number): void;
  /** out[i] = src[i] rounded to the nearest half (ties to even, overflow to Inf, NaN quiet). */
  toFloat16(src: Float32Array, out: Uint16Array, n: number): void;
}

/**
 * The SIMD converter of this thread, or undefined where WebAssembly SIMD is missing. It converts the
 * whole multiples of 8 of each chunk; the caller converts the few values left (at most 7).
 */
export const halfConverter = moduleOnce<HalfConverter>(moduleBytes, (exports) => {
  const e = exports as {
    memory: WebAssembly.Memory;
    halfToFloat(out: number, src: number, n: number): void;
    floatToHalf(out: number, src: number, n: number): void;
  };
  // The memory never grows, so these views stay valid.
  const floats = new Float32Array(e.memory.buffer, FLOATS_AT, HALF_CHUNK);
  const halves = new Uint16Array(e.memory.buffer, HALVES_AT, HALF_CHUNK);
  // Chunk by chunk: copy in, convert in the module's memory, copy out.
  type View = Float32Array | Uint16Array;
  const chunked = <S extends View, O extends View>(src: S, srcView: S, out: O, outView: O, n: number, run: (len: number) => void) => {
    for (let o = 0; o < n; o += HALF_CHUNK) {
      const len = Math.min(HALF_CHUNK, n - o) & ~7;
      if (!len) break;
      srcView.set(src.subarray(o, o + len) as never);
      run(len);
      out.set(outView.subarray(0, len) as never, o);
    }
  };
  return {
    toFloat32: (src, out, n) => chunked(src, halves, out, floats, n, (len) => e.halfToFloat(FLOATS_AT, HALVES_AT, len)),
    toFloat16: (src, out, n) => chunked(src, floats, out, halves, n, (len) => e.floatToHalf(HALVES_AT, FLOATS_AT, len)),
  };
});
