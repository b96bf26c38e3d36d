import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { fromFloat16, toFloat16 } from '../training/workers/boundary-float16.js';

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
