// IEEE 754 binary16 <-> binary32 conversion for compact activation caches.
// float32 -> float16 rounds to nearest even (F. Giesen's float_to_half_fast3_rtne); float16 -> float32
// is a 65,536-entry lookup table (256 KiB, built on first use).

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
  const bits = new Uint32Array(src.buffer, src.byteOffset, src.length);
  for (let i = 0; i < bits.length; i++) {
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
  const t = new Float32Array(65536);
  for (let h = 0; h < 65536; h++) {
    const sign = h & 0x8000 ? -1 : 1;
    const exp = (h >>> 10) & 0x1f;
    const mant = h & 0x3ff;
    if (exp === 0) t[h] = sign * mant * 2 ** -24;
    else if (exp === 31) t[h] = mant ? Number.NaN : sign * Number.POSITIVE_INFINITY;
    else t[h] = sign * (1 + mant / 1024) * 2 ** (exp - 15);
  }
  table = t;
  return t;
}

/** Converts float16 bit patterns to float32 values (exact). */
export function fromFloat16(src: Uint16Array, out = new Float32Array(src.length)): Float32Array {
  if (out.length < src.length) throw new Error(`fromFloat16: output holds ${out.length} values, need ${src.length}`);
  const t = halfToFloatTable();
  for (let i = 0; i < src.length; i++) out[i] = t[src[i]];
  return out;
}
