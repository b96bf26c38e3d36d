import { describe, expect, it } from 'vitest';
import { temperedProbabilities } from '../core/head-convention.js';
import { calibrate, expectedCalibrationError, fitTemperature, nll, reliabilityBins, scaledProbabilities } from '../training/calibration.js';
import { createRng } from '../training/rng.js';

// Synthetic held-out scores whose true temperature is known: labels drawn from softmax(z / T0).
function sample(n: number, k: number, t0: number, seed: number) {
  const rng = createRng(seed);
  const logits: number[][] = [];
  const labels: number[] = [];
  for (let i = 0; i < n; i++) {
    const z = Array.from({ length: k === 2 ? 1 : k }, () => (rng() - 0.5) * 12);
    const p = temperedProbabilities(z, k, t0);
    let u = rng();
    let y = 0;
    while (y < p.length - 1 && u > p[y]) u -= p[y++];
    logits.push(z);
    labels.push(y);
  }
  return { logits, labels };
}

describe('temperature scaling', () => {
  it('recovers the temperature that generated the labels (softmax, 5 classes)', () => {
    const { logits, labels } = sample(4000, 5, 2.5, 1);
    expect(fitTemperature(logits, labels, 5)).toBeCloseTo(2.5, 0);
    expect(Math.abs(fitTemperature(logits, labels, 5) - 2.5)).toBeLessThan(0.25);
  });

  it('recovers it for the binary one-logit head too', () => {
    const { logits, labels } = sample(4000, 2, 0.5, 2);
    expect(Math.abs(fitTemperature(logits, labels, 2) - 0.5)).toBeLessThan(0.06);
  });

  it('minimises the NLL: neighbours of the fitted T are no better', () => {
    const { logits, labels } = sample(300, 3, 3, 3);
    const t = fitTemperature(logits, labels, 3);
    const f = (x: number) => nll(logits, labels, 3, x);
    expect(f(t)).toBeLessThanOrEqual(f(t * 1.05) + 1e-12);
    expect(f(t)).toBeLessThanOrEqual(f(t / 1.05) + 1e-12);
  });

  it('keeps every argmax and lowers the ECE of over-confident scores', () => {
    const { logits, labels } = sample(2000, 4, 3, 4);
    const r = calibrate(logits, labels, 4, 'synthetic held-out scores');
    const before = scaledProbabilities(logits, 4, 1);
    const after = scaledProbabilities(logits, 4, r.temperature);
    const top = (p: number[]) => p.indexOf(Math.max(...p));
    expect(after.map(top)).toEqual(before.map(top));
    expect(r.eceBefore).toBeGreaterThan(0.1);
    expect(r.eceAfter).toBeLessThan(r.eceBefore / 3);
    expect(r.nllAfter).toBeLessThan(r.nllBefore);
    expect(r.reliabilityAfter.reduce((s, b) => s + b.count, 0)).toBe(2000);
  });

  it('with apply = false (--temperature off, the default) reports the fit but keeps T = 1', () => {
    const { logits, labels } = sample(2000, 4, 3, 4);
    const fitted = calibrate(logits, labels, 4, 'synthetic');
    const off = calibrate(logits, labels, 4, 'synthetic', 10, false);
    expect(off.temperature).toBe(1);
    expect(off.eceAfter).toBe(off.eceBefore);
    expect(off.nllAfter).toBe(off.nllBefore);
    expect(off.fittedOn).toContain(`fitted T = ${fitted.temperature.toFixed(3)}`);
    expect(off.fittedOn).toContain('not applied');
  });

  it('bins and ECE by hand on four rows', () => {
    const probs = [
      [0.95, 0.05],
      [0.15, 0.85],
      [0.8, 0.2],
      [0.6, 0.4],
    ];
    const labels = [0, 1, 1, 0];
    const bins = reliabilityBins(probs, labels, 10);
    expect(bins[9]).toMatchObject({ count: 1, accuracy: 1 });
    expect(bins[8]).toMatchObject({ count: 2, accuracy: 0.5 });
    expect(bins[8].confidence).toBeCloseTo(0.825, 10);
    // 1/4*|1-.95| + 2/4*|.5-.825| + 1/4*|1-.6|
    expect(expectedCalibrationError(probs, labels, 10)).toBeCloseTo(0.25 * 0.05 + 0.5 * 0.325 + 0.25 * 0.4, 10);
  });

  it('is stable for huge logits (no NaN)', () => {
    expect(Number.isFinite(nll([[1000, -1000, 0]], [1], 3, 1))).toBe(true);
    expect(Number.isFinite(nll([[800]], [0], 2, 1))).toBe(true);
    expect(fitTemperature([], [], 3)).toBe(1);
  });
  it('keeps T = 1 when every held-out row is right (the likelihood has no minimum), and says so', () => {
    const logits = [[3], [-2], [4], [1.5], [-0.5]];
    const labels = [1, 0, 1, 1, 0];
    expect(fitTemperature(logits, labels, 2)).toBeLessThan(0.051);
    const r = calibrate(logits, labels, 2, 'validation split (5 images)');
    expect(r.temperature).toBe(1);
    expect(r.fittedOn).toMatch(/bound T = 0\.050.*kept at 1/);
    expect(r.eceAfter).toBe(r.eceBefore);
    const mixed = calibrate([[3], [-2], [4], [1.5], [-0.5], [0.7]], [1, 0, 1, 1, 0, 0], 2, 'x');
    expect(mixed.temperature).not.toBe(1);
    expect(mixed.fittedOn).toBe('x');
  });
});
