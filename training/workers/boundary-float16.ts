// IEEE 754 binary16 <-> binary32 conversion for compact activation caches.
// float32 -> float16 rounds to nearest even (F. Giesen's float_to_half_fast3_rtne); float16 -> float32
// is a 65,536-entry lookup table (256 KiB, built on first use). Where WebAssembly SIMD runs, the same
// arithmetic runs 8 values at a time (wasm-kernels/half-simd.ts) and these loops take only the rest.
import { halfConverter } from '../wasm-kernels/half-simd.js';

const F16_MAX_AS_F32_BITS = (127 + 16) << 23; // 65536.0: at or above this the half is Inf/NaN
const F32_INF_BITS = 255 << 23;
const MIN_NORMAL_HALF_BITS = 113 << 23; // 2^-14 as a float32
const DENORM_MAGIC_BITS = (127 - 15 + 23 - 10 + 1) << 23; // 0.5
const DENORM_MAGIC = new Float32Array(new Uint32Array([DENORM_MAGIC_BITS]).buffer)[0];

const scratchF = new Float32Array(1);
const scratchU = new Uint32Array(scratchF.buffer);

/** Converts float32 values to float16 bit patterns (round to nearest even, overflow to +-Inf, NaN kept). */
export function toFloat16(src: Float32Array, out = new Uint16Array(src.length)): Uint16Array {
  if (out.length < src.length) throw new Error(`toFloat16: output holds ${out.length} values, need ${src.length}`);
  const simd = src.length >= 64 ? halfConverter() : undefined;
  simd?.toFloat16(src, out, src.length);
  return toFloat16Scalar(src, out, simd ? src.length & ~7 : 0);
}

/** toFloat16 in plain JS from element `from` on (the reference for the SIMD loop). */
export function toFloat16Scalar(src: Float32Array, out = new Uint16Array(src.length), from = 0): Uint16Array {
  const bits = new Uint32Array(src.buffer, src.byteOffset, src.length);
  for (let i = from; i < bits.length; i++) {
    const x = bits[i];
    const sign = (x >>> 16) & 0x8000;
    let u = x & 0x7fffffff;
    let h: number;
    if (u >= F16_MAX_AS_F32_BITS) {
      h = u > F32_INF_BITS ? 0x7e00 : 0x7c00;
    } else if (u < MIN_NORMAL_HALF_BITS) {
      if (u === 0) {
        h = 0;
      } else {
        // Adding 0.5 aligns the 10 subnormal mantissa bits at the bottom; float32 addition rounds to even.
        scratchU[0] = u;
        scratchF[0] = scratchF[0] + DENORM_MAGIC;
        h = scratchU[0] - DENORM_MAGIC_BITS;
      }
    } else {
      const mantOdd = (u >>> 13) & 1;
      u = (u + ((15 - 127) << 23) + 0xfff + mantOdd) >>> 0;
      h = u >>> 13;
    }
    out[i] = h | sign;
  }
  return out;
}

let table: Float32Array | undefined;

function halfToFloatTable(): Float32Array {
  if (table) return table;
  // Built from the bits: NaNs keep their sign and payload (quiet, as any float32 read into a JS number).
  const t = new Float32Array(65536);
  const u = new Uint32Array(t.buffer);
  const f = new Float32Array(1);
  const fu = new Uint32Array(f.buffer);
  for (let h = 0; h < 65536; h++) {
    const em = h & 0x7fff;
    let bits = (em << 13) + (112 << 23);
    if (em >= 0x7c00) bits += 112 << 23;
    else if (em < 0x400) {
      fu[0] = bits + (1 << 23);
      f[0] -= 2 ** -14;
      bits = fu[0];
    }
    u[h] = (bits | ((h & 0x8000) << 16) | (em > 0x7c00 ? 0x400000 : 0)) >>> 0;
  }
  table = t;
  return t;
}

/** Converts float16 bit patterns to float32 values (exact, NaN payloads included). */
export function fromFloat16(src: Uint16Array, out = new Float32Array(src.length)): Float32Array {
  if (out.length < src.length) throw new Error(`fromFloat16: output holds ${out.length} values, need ${src.length}`);
  const simd = src.length >= 64 ? halfConverter() : undefined;
  simd?.toFloat32(src, out, src.length);
  return fromFloat16Scalar(src, out, simd ? src.length & ~7 : 0);
}

/** fromFloat16 in plain JS from element `from` on (the reference for the SIMD loop). */
export function fromFloat16Scalar(src: Uint16Array, out = new Float32Array(src.length), from = 0): Float32Array {
  const t = halfToFloatTable();
  for (let i = from; i < src.length; i++) out[i] = t[src[i]];
  return out;
}
