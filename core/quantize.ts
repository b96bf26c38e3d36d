import type { io } from '@tensorflow/tfjs';

export type QuantizeDtype = 'none' | 'float16' | 'uint8';

const f32 = new Float32Array(1);
const u32 = new Uint32Array(f32.buffer);

/** IEEE 754 float32 -> float16 bits, round to nearest even, with subnormals, inf and NaN. */
export function float32ToFloat16Bits(value: number): number {
  f32[0] = value;
  const x = u32[0];
  const sign = (x >>> 16) & 0x8000;
  const exp = (x >>> 23) & 0xff;
  let mant = x & 0x7fffff;
  if (exp === 0xff) return sign | 0x7c00 | (mant ? 0x200 : 0);
  let e = exp - 127 + 15;
  if (e >= 0x1f) return sign | 0x7c00;
  if (e <= 0) {
    if (e < -10) return sign;
    mant |= 0x800000;
    const shift = 14 - e;
    let half = mant >>> shift;
    const rem = mant & ((1 << shift) - 1);
    const mid = 1 << (shift - 1);
    if (rem > mid || (rem === mid && half & 1)) half++;
    return sign | half;
  }
  let half = (e << 10) | (mant >>> 13);
  const rem = mant & 0x1fff;
  if (rem > 0x1000 || (rem === 0x1000 && half & 1)) half++;
  // A carry out of the mantissa correctly bumps the exponent (up to infinity).
  e = half;
  return sign | e;
}

interface Quantized {
  specs: io.WeightsManifestEntry[];
  data: Buffer;
}

/**
 * Re-encodes float32 weights in tfjs' weights-manifest quantization format
 * (`quantization: {dtype}` for float16, `{dtype: 'uint8', scale, min}` per tensor for uint8),
 * which `tf.loadLayersModel` dequantizes on load. Other dtypes and already-quantized entries
 * are copied unchanged.
 */
export function quantizeWeights(specs: io.WeightsManifestEntry[], weightData: ArrayBuffer, dtype: QuantizeDtype): Quantized {
  const src = Buffer.from(weightData);
  if (dtype === 'none') return { specs: specs.map((s) => ({ ...s })), data: src };
  const outSpecs: io.WeightsManifestEntry[] = [];
  const chunks: Buffer[] = [];
  let offset = 0;
  for (const spec of specs) {
    const size = spec.shape.reduce((a, b) => a * b, 1);
    if (spec.quantization)
      throw new Error(`weight ${spec.name} is already quantized (${spec.quantization.dtype}); publish the unquantized model`);
    const bytesPer = spec.dtype === 'float32' || spec.dtype === 'int32' ? 4 : spec.dtype === 'bool' ? 1 : NaN;
    if (Number.isNaN(bytesPer)) throw new Error(`cannot quantize weight ${spec.name} of dtype ${spec.dtype}`);
    const bytes = size * bytesPer;
    const raw = src.subarray(offset, offset + bytes);
    offset += bytes;
    if (spec.dtype !== 'float32') {
      outSpecs.push({ ...spec });
      chunks.push(Buffer.from(raw));
      continue;
    }
    const values = new Float32Array(raw.buffer.slice(raw.byteOffset, raw.byteOffset + raw.byteLength));
    if (dtype === 'float16') {
      const out = new Uint16Array(size);
      for (let i = 0; i < size; i++) out[i] = float32ToFloat16Bits(values[i]);
      outSpecs.push({ ...spec, quantization: { dtype: 'float16' } });
      chunks.push(Buffer.from(out.buffer));
    } else {
      let min = Number.POSITIVE_INFINITY;
      let max = Number.NEGATIVE_INFINITY;
      for (const v of values) {
        if (v < min) min = v;
        if (v > max) max = v;
      }
      if (size === 0) min = max = 0;
      const scale = max > min ? (max - min) / 255 : 1;
      const out = new Uint8Array(size);
      for (let i = 0; i < size; i++) out[i] = Math.max(0, Math.min(255, Math.round((values[i] - min) / scale)));
      outSpecs.push({ ...spec, quantization: { dtype: 'uint8', scale, min } });
      chunks.push(Buffer.from(out.buffer));
    }
  }
  if (offset !== src.byteLength) throw new Error(`weight data is ${src.byteLength} bytes but the specs describe ${offset}`);
  return { specs: outSpecs, data: Buffer.concat(chunks) };
}
