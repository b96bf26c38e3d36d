import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { HALF_CHUNK, halfConverter } from '../training/wasm-kernels/half-simd.js';
import { fromFloat16, fromFloat16Scalar, toFloat16, toFloat16Scalar } from '../training/workers/boundary-float16.js';

const half = (x: number) => toFloat16(new Float32Array([x]))[0];

describe('float16 conversion', () => {
  it('encodes known values, rounding to nearest even', () => {
    expect(half(0)).toBe(0);
    expect(half(-0)).toBe(0x8000);
    expect(half(1)).toBe(0x3c00);
    expect(half(-2)).toBe(0xc000);
    expect(half(6)).toBe(0x4600);
    expect(half(65504)).toBe(0x7bff);
    expect(half(65519)).toBe(0x7bff);
    expect(half(65520)).toBe(0x7c00);
    expect(half(Number.POSITIVE_INFINITY)).toBe(0x7c00);
    expect(half(Number.NEGATIVE_INFINITY)).toBe(0xfc00);
    expect(half(Number.NaN) & 0x7c00).toBe(0x7c00);
    expect(half(Number.NaN) & 0x3ff).not.toBe(0);
    expect(half(2 ** -24)).toBe(1); // smallest subnormal
    expect(half(2 ** -25)).toBe(0); // tie -> even (0)
    expect(half(3 * 2 ** -25)).toBe(2); // tie between 1 and 2 -> even (2)
    expect(half(2 ** -14)).toBe(0x0400); // smallest normal
    expect(half(1 + 2 ** -11)).toBe(0x3c00); // tie -> even mantissa
    expect(half(1 + 3 * 2 ** -11)).toBe(0x3c02);
    expect(half(1e-9)).toBe(0);
  });

  it('round-trips every float16 value exactly', () => {
    const all = new Uint16Array(65536).map((_, i) => i);
    const f = fromFloat16(all);
    const back = toFloat16(f);
    const wrong: number[] = [];
    for (let h = 0; h < 65536; h++) {
      const ok = Number.isNaN(f[h]) ? (back[h] & 0x7c00) === 0x7c00 && (back[h] & 0x3ff) !== 0 : back[h] === h;
      if (!ok) wrong.push(h);
    }
    expect(wrong).toEqual([]);
  });

  it('picks the nearest float16 for any float32 (error at most half a unit in the last place)', () => {
    fc.assert(
      fc.property(fc.float({ min: -60000, max: 60000, noNaN: true }), (x) => {
        const y = fromFloat16(toFloat16(new Float32Array([x])))[0];
        const ax = Math.abs(x);
        const ulp = ax < 2 ** -14 ? 2 ** -24 : 2 ** (Math.floor(Math.log2(ax)) - 10);
        expect(Math.abs(y - Math.fround(x))).toBeLessThanOrEqual(ulp / 2 + 1e-30);
      }),
      { numRuns: 2000 },
    );
  });

  it('writes into a given buffer and checks its size', () => {
    const out = new Uint16Array(4);
    toFloat16(new Float32Array([1, 2]), out.subarray(1, 3));
    expect(Array.from(out)).toEqual([0, 0x3c00, 0x4000, 0]);
    expect(() => toFloat16(new Float32Array(3), new Uint16Array(2))).toThrow(/need 3/);
  });
});

const bitsOf = (f: Float32Array) => Array.from(new Uint32Array(f.buffer, f.byteOffset, f.length));

describe('float16 conversion on WebAssembly SIMD', () => {
  const simd = halfConverter();

  it('runs here (Node 20 has WebAssembly SIMD)', () => {
    expect(simd).toBeDefined();
  });

  it('widens every half to the same float32 bits as the JS table, NaNs included', () => {
    const all = new Uint16Array(65536).map((_, i) => i);
    const out = new Float32Array(65536).fill(-1);
    simd!.toFloat32(all, out, all.length);
    expect(bitsOf(out)).toEqual(bitsOf(fromFloat16Scalar(all)));
    expect(bitsOf(fromFloat16(all))).toEqual(bitsOf(out));
  });

  it('narrows float32 to the same halves as the JS rounding (edges, every exponent, random bits)', () => {
    const n = 1 << 20;
    const bits = new Uint32Array(n);
    let s = 12345;
    for (let i = 0; i < n; i++) {
      s = (Math.imul(s, 1103515245) + 12345) >>> 0;
      // A quarter walks every exponent with the 13 dropped bits at their tie and neighbours, the rest is random.
      const walk = ((i >>> 2) << 13) | [0x0fff, 0x1000, 0x1001, 0x1fff][i & 3];
      bits[i] = i < n / 4 ? walk >>> 0 : (s ^ (s << 7)) >>> 0;
    }
    const edges = [
      0, 0x80000000, 0x7f800000, 0xff800000, 0x7fc00000, 0x477fefff, 0x477ff000, 0x38800000, 0x387fffff, 0x33000000, 0x33000001, 1,
    ];
    bits.set(edges);
    const f = new Float32Array(bits.buffer);
    const out = new Uint16Array(n);
    simd!.toFloat16(f, out, n);
    expect(Array.from(out)).toEqual(Array.from(toFloat16Scalar(f)));
  });

  it('converts lengths that are not multiples of 8 or of a chunk through the public functions', () => {
    for (const n of [63, 64, 65, 71, HALF_CHUNK - 3, HALF_CHUNK + 9, 3 * HALF_CHUNK + 5]) {
      const f = Float32Array.from({ length: n }, (_, i) => Math.sin(i) * 70000 * (i % 3 === 0 ? 1e-9 : 1));
      const h = toFloat16(f);
      expect(Array.from(h)).toEqual(Array.from(toFloat16Scalar(f)));
      const out = new Float32Array(n + 2).fill(7);
      fromFloat16(h, out.subarray(1, n + 1));
      expect(bitsOf(out.subarray(1, n + 1))).toEqual(bitsOf(fromFloat16Scalar(h)));
      expect([out[0], out[n + 1]]).toEqual([7, 7]);
    }
  });
});
