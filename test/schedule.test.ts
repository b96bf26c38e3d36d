import { describe, expect, it } from 'vitest';
import { learningRateAt } from '../training/schedule.js';

describe('phase-2 learning-rate schedule', () => {
  it('constant keeps the rate', () => {
    expect([0, 5, 9].map((s) => learningRateAt('constant', 1e-4, s, 10))).toEqual([1e-4, 1e-4, 1e-4]);
  });

  it('cosine starts at the rate, halves at mid-run, decreases monotonically towards 0', () => {
    const total = 90;
    const lrs = Array.from({ length: total }, (_, s) => learningRateAt('cosine', 1e-4, s, total));
    expect(lrs[0]).toBe(1e-4);
    expect(learningRateAt('cosine', 1e-4, 45, total)).toBeCloseTo(5e-5, 12);
    for (let i = 1; i < total; i++) expect(lrs[i]).toBeLessThan(lrs[i - 1]);
    expect(lrs[total - 1]).toBeGreaterThan(0);
    expect(learningRateAt('cosine', 1e-4, total, total)).toBeCloseTo(0, 12);
  });
});
