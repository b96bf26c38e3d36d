import { describe, expect, it } from 'vitest';
import { MetricsSchema } from '../core/manifest.js';
import { accuracy, argmax, computeMetrics, confusionMatrix, LOSS_EPSILON, meanLoss, perClassMetrics, rocAuc } from '../training/metrics.js';

const bin = (ps: number[]) => ps.map((p) => [1 - p, p]);

describe('accuracy and argmax', () => {
  it('counts argmax hits; binary p = 0.5 predicts class 0 (Keras p > 0.5)', () => {
    expect(argmax([0.5, 0.5])).toBe(0);
    expect(argmax([0.1, 0.7, 0.2])).toBe(1);
    expect(accuracy(bin([0.9, 0.2, 0.5, 0.6]), [1, 0, 1, 0])).toBe(0.5);
  });
});

describe('meanLoss', () => {
  it('binary cross-entropy on row[1], hand computed', () => {
    // -(ln 0.8 + ln(1 - 0.4)) / 2
    const expected = -(Math.log(0.8) + Math.log(0.6)) / 2;
    expect(meanLoss(bin([0.8, 0.4]), [1, 0])).toBeCloseTo(expected, 12);
  });

  it('categorical cross-entropy for 3 classes, hand computed', () => {
    const probs = [
      [0.7, 0.2, 0.1],
      [0.1, 0.3, 0.6],
      [0.25, 0.5, 0.25],
    ];
    const expected = -(Math.log(0.7) + Math.log(0.6) + Math.log(0.5)) / 3;
    expect(meanLoss(probs, [0, 2, 1])).toBeCloseTo(expected, 12);
  });

  it('clips so a confidently wrong prediction gives a finite loss', () => {
    const l = meanLoss(bin([0, 1]), [1, 0]);
    expect(Number.isFinite(l)).toBe(true);
    expect(l).toBeCloseTo(-Math.log(LOSS_EPSILON), 6);
    const l3 = meanLoss([[1, 0, 0]], [2]);
    expect(l3).toBeCloseTo(-Math.log(LOSS_EPSILON), 6);
  });
});

describe('confusion matrix and per-class metrics', () => {
  it('rows are true classes, columns predicted', () => {
    const probs = [
      [0.8, 0.1, 0.1], // 0 -> 0
      [0.2, 0.7, 0.1], // 0 -> 1
      [0.1, 0.8, 0.1], // 1 -> 1
      [0.6, 0.3, 0.1], // 2 -> 0
      [0.1, 0.2, 0.7], // 2 -> 2
      [0.1, 0.6, 0.3], // 2 -> 1
    ];
    const labels = [0, 0, 1, 2, 2, 2];
    const cm = confusionMatrix(probs, labels, 3);
    expect(cm).toEqual([
      [1, 1, 0],
      [0, 1, 0],
      [1, 1, 1],
    ]);
    const pc = perClassMetrics(cm, ['a', 'b', 'c']);
    expect(pc[0]).toEqual({ label: 'a', precision: 0.5, recall: 0.5, support: 2 });
    expect(pc[1].precision).toBeCloseTo(1 / 3, 12);
    expect(pc[1].recall).toBe(1);
    expect(pc[1].support).toBe(1);
    expect(pc[2]).toEqual({ label: 'c', precision: 1, recall: 1 / 3, support: 3 });
  });

  it('a class never predicted has precision 0, not NaN; a class with no examples has recall 0', () => {
    const m = computeMetrics(bin([0.1, 0.2, 0.3]), [0, 1, 1], ['neg', 'pos']);
    expect(m.perClass[1]).toEqual({ label: 'pos', precision: 0, recall: 0, support: 2 });
    expect(m.perClass[0].precision).toBeCloseTo(1 / 3, 12);
    const none = perClassMetrics(
      [
        [2, 0],
        [0, 0],
      ],
      ['x', 'y'],
    );
    expect(none[1]).toEqual({ label: 'y', precision: 0, recall: 0, support: 0 });
  });
});

describe('rocAuc', () => {
  it('perfect, inverted and hand-computed rankings', () => {
    expect(rocAuc([0.1, 0.2, 0.8, 0.9], [0, 0, 1, 1])).toBe(1);
    expect(rocAuc([0.9, 0.8, 0.2, 0.1], [0, 0, 1, 1])).toBe(0);
    // positives 0.35, 0.8; negatives 0.1, 0.4: pairs (0.35>0.1 yes, 0.35>0.4 no, 0.8>both yes) = 3/4
    expect(rocAuc([0.1, 0.4, 0.35, 0.8], [0, 0, 1, 1])).toBeCloseTo(0.75, 12);
  });

  it('ties count one half', () => {
    // all equal: every pair is a tie -> 0.5
    expect(rocAuc([0.5, 0.5, 0.5, 0.5], [0, 1, 0, 1])).toBeCloseTo(0.5, 12);
    // positives 0.6, 0.3; negatives 0.3, 0.1: pairs 0.6>0.3 1, 0.6>0.1 1, 0.3=0.3 0.5, 0.3>0.1 1 -> 3.5/4
    expect(rocAuc([0.6, 0.3, 0.3, 0.1], [1, 1, 0, 0])).toBeCloseTo(0.875, 12);
  });

  it('matches a brute-force pair count on random data with many ties', () => {
    let s = 12345;
    const rnd = () => {
      s = (s * 1103515245 + 12345) % 2 ** 31;
      return s / 2 ** 31;
    };
    const scores = Array.from({ length: 200 }, () => Math.round(rnd() * 10) / 10);
    const labels = scores.map((x) => (rnd() < 0.3 + 0.4 * x ? 1 : 0));
    let num = 0;
    let den = 0;
    for (let i = 0; i < scores.length; i++) {
      for (let j = 0; j < scores.length; j++) {
        if (labels[i] === 1 && labels[j] === 0) {
          den++;
          num += scores[i] > scores[j] ? 1 : scores[i] === scores[j] ? 0.5 : 0;
        }
      }
    }
    expect(rocAuc(scores, labels)).toBeCloseTo(num / den, 12);
  });

  it('is undefined when only one class is present', () => {
    expect(rocAuc([0.1, 0.9], [1, 1])).toBeUndefined();
    expect(computeMetrics(bin([0.1, 0.9]), [1, 1], ['a', 'b']).auc).toBeUndefined();
  });
});

describe('computeMetrics', () => {
  it('produces a MetricsSchema object; auc only for binary', () => {
    const m = computeMetrics(bin([0.9, 0.2, 0.6, 0.4]), [1, 0, 0, 1], ['not_alpaca', 'alpaca']);
    expect(MetricsSchema.parse(m)).toEqual(m);
    expect(m.valAccuracy).toBe(0.5);
    expect(m.confusion).toEqual([
      [1, 1],
      [1, 1],
    ]);
    expect(m.auc).toBeCloseTo(0.75, 12);
    const m3 = computeMetrics(
      [
        [0.5, 0.3, 0.2],
        [0.1, 0.1, 0.8],
      ],
      [0, 2],
      ['a', 'b', 'c'],
    );
    expect(m3.auc).toBeUndefined();
    expect(m3.valAccuracy).toBe(1);
    expect(MetricsSchema.parse(m3)).toEqual(m3);
  });

  it('rejects inconsistent input with clear errors', () => {
    expect(() => computeMetrics([], [], ['a', 'b'])).toThrow(/no examples/);
    expect(() => computeMetrics(bin([0.5]), [0, 1], ['a', 'b'])).toThrow(/1 probability rows but 2 labels/);
    expect(() => computeMetrics([[0.5, 0.5, 0]], [0], ['a', 'b'])).toThrow(/expected 2/);
    expect(() => computeMetrics(bin([0.5]), [2], ['a', 'b'])).toThrow(/label 2/);
    expect(() => computeMetrics([[Number.NaN, 1]], [0], ['a', 'b'])).toThrow(/invalid probability/);
    expect(() => computeMetrics(bin([0.5]), [0], ['a'])).toThrow(/at least 2 classes/);
  });
});
