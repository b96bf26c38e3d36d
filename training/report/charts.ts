import type { TopLevelSpec } from 'vega-lite';
import type { Calibration, EpochRecord } from '../../core/manifest.js';

/** Vega-Lite specs for the training report: the notebook's two curves and the confusion matrix. */

const FONT = 'DejaVu Sans, Liberation Sans, Helvetica, Arial, sans-serif';
const SERIES_COLOURS = { Training: '#1f77b4', Validation: '#ff7f0e' } as const;

const baseConfig = {
  font: FONT,
  background: 'white',
  padding: 12,
  view: { stroke: '#ddd' },
  axis: {
    labelFontSize: 11,
    titleFontSize: 12,
    titleFontWeight: 'normal' as const,
    gridColor: '#eee',
    domainColor: '#888',
    tickColor: '#888',
  },
  legend: { labelFontSize: 12, titleFontSize: 12, orient: 'bottom' as const, direction: 'horizontal' as const, title: null },
  title: { fontSize: 15, fontWeight: 'bold' as const, anchor: 'start' as const, subtitleFontSize: 12, subtitleColor: '#666', offset: 10 },
};

export type CurveMetric = 'accuracy' | 'loss';

interface CurvePoint {
  epoch: number;
  series: 'Training' | 'Validation';
  phase: string;
  value: number;
}

/** Epoch after which fine-tuning starts (the marker goes half an epoch later), or undefined with a single phase. */
export function fineTuneStart(history: readonly EpochRecord[]): number | undefined {
  const frozen = history.filter((h) => h.phase === 'frozen');
  const fine = history.filter((h) => h.phase === 'fineTune');
  if (!frozen.length || !fine.length) return undefined;
  return Math.max(...frozen.map((h) => h.epoch));
}

/** Training and validation curves over the epochs of both phases, with a marker where fine-tuning starts. */
export function curveSpec(history: readonly EpochRecord[], metric: CurveMetric): TopLevelSpec {
  if (!history.length) throw new Error('report: the manifest has no epoch history to plot');
  const points: CurvePoint[] = history.flatMap((h) => {
    const phase = h.phase === 'frozen' ? 'base frozen' : 'fine-tuning';
    return [
      { epoch: h.epoch, series: 'Training' as const, phase, value: metric === 'accuracy' ? h.accuracy : h.loss },
      { epoch: h.epoch, series: 'Validation' as const, phase, value: metric === 'accuracy' ? h.valAccuracy : h.valLoss },
    ];
  });
  const values = points.map((p) => p.value);
  const lo = Math.min(...values);
  const hi = Math.max(...values);
  // accuracy: zoom on the interesting band but always show 1.0; loss: from 0
  const domain =
    metric === 'accuracy' ? [Math.max(0, Math.min(0.5, Math.floor(lo * 10) / 10)), 1] : [0, Math.max(0.1, Math.ceil(hi * 10) / 10)];
  const start = fineTuneStart(history);
  const maxEpoch = Math.max(...history.map((h) => h.epoch));
  const minEpoch = Math.min(...history.map((h) => h.epoch));
  const title = metric === 'accuracy' ? 'Training and validation accuracy' : 'Training and validation loss';
  const yTitle = metric === 'accuracy' ? 'Accuracy' : 'Cross-entropy loss';

  const layers: NonNullable<Extract<TopLevelSpec, { layer: unknown }>['layer']> = [
    {
      data: { values: points },
      mark: { type: 'line', point: { filled: true, size: 36 }, strokeWidth: 2, clip: true },
      encoding: {
        x: {
          field: 'epoch',
          type: 'quantitative',
          title: 'Epoch',
          scale: { domain: [minEpoch - 0.5, maxEpoch + 0.5], nice: false },
          axis: {
            tickMinStep: 1,
            format: 'd',
            values: Array.from({ length: maxEpoch - minEpoch + 1 }, (_, i) => minEpoch + i).filter(
              (e, _i, all) => all.length <= 25 || e % Math.ceil(all.length / 20) === 0,
            ),
          },
        },
        y: { field: 'value', type: 'quantitative', title: yTitle, scale: { domain, nice: false, zero: metric === 'loss' } },
        color: {
          field: 'series',
          type: 'nominal',
          scale: { domain: Object.keys(SERIES_COLOURS), range: Object.values(SERIES_COLOURS) },
        },
        tooltip: [
          { field: 'series', type: 'nominal' },
          { field: 'phase', type: 'nominal' },
          { field: 'epoch', type: 'quantitative' },
          { field: 'value', type: 'quantitative', format: '.4f' },
        ],
      },
    },
  ];
  if (start !== undefined) {
    const marker = [{ x: start + 0.5, label: 'Start fine-tuning' }];
    layers.push(
      {
        data: { values: marker },
        mark: { type: 'rule', color: '#2ca02c', strokeDash: [6, 4], strokeWidth: 1.5 },
        encoding: { x: { field: 'x', type: 'quantitative' } },
      },
      {
        data: { values: marker },
        mark: { type: 'text', align: 'left', baseline: 'top', dx: 5, dy: 4, color: '#2ca02c', fontSize: 12 },
        encoding: { x: { field: 'x', type: 'quantitative' }, y: { value: 0 }, text: { field: 'label' } },
      },
    );
  }
  return {
    $schema: 'https://vega.github.io/schema/vega-lite/v6.json',
    title: {
      text: title,
      subtitle: start !== undefined ? `epochs 1-${start}: base frozen; ${start + 1}-${maxEpoch}: fine-tuning` : undefined,
    },
    width: 480,
    height: 260,
    config: baseConfig,
    layer: layers,
  } as TopLevelSpec;
}

/** Confusion matrix heatmap: rows true class, columns predicted; cells show count and share of the row. */
export function confusionSpec(classes: readonly string[], confusion: readonly (readonly number[])[], subtitle: string): TopLevelSpec {
  if (confusion.length !== classes.length || confusion.some((r) => r.length !== classes.length)) {
    throw new Error(`report: confusion matrix is not ${classes.length}x${classes.length}`);
  }
  const cells = confusion.flatMap((row, i) => {
    const total = row.reduce((a, b) => a + b, 0);
    return row.map((count, j) => ({
      actual: classes[i],
      predicted: classes[j],
      count,
      share: total ? count / total : 0,
      label: `${count}${total ? ` (${Math.round((100 * count) / total)}%)` : ''}`,
      dark: total > 0 && count / total > 0.55,
    }));
  });
  const cell = classes.length <= 3 ? 110 : classes.length <= 6 ? 80 : 56;
  const order = [...classes];
  return {
    $schema: 'https://vega.github.io/schema/vega-lite/v6.json',
    title: { text: 'Confusion matrix', subtitle },
    width: cell * classes.length,
    height: cell * classes.length,
    data: { values: cells },
    config: { ...baseConfig, axis: { ...baseConfig.axis, grid: false, ticks: false, domain: false, labelPadding: 6 } },
    encoding: {
      x: { field: 'predicted', type: 'ordinal', sort: order, title: 'Predicted', axis: { orient: 'top', labelAngle: 0, titlePadding: 10 } },
      y: { field: 'actual', type: 'ordinal', sort: order, title: 'True' },
    },
    layer: [
      {
        mark: { type: 'rect', stroke: 'white', strokeWidth: 2 },
        encoding: {
          // shade by share of the true class, so a small class's errors are as visible as a large one's
          color: { field: 'share', type: 'quantitative', scale: { range: ['#f4f8fc', '#08519c'], domain: [0, 1] }, legend: null },
          tooltip: [
            { field: 'actual', title: 'true' },
            { field: 'predicted', title: 'predicted' },
            { field: 'count', type: 'quantitative' },
            { field: 'share', type: 'quantitative', format: '.1%', title: 'share of true class' },
          ],
        },
      },
      {
        mark: { type: 'text', fontSize: cell >= 80 ? 14 : 11, fontWeight: 'bold' },
        encoding: {
          text: { field: 'label' },
          color: { condition: { test: 'datum.dark', value: 'white' }, value: '#222' },
        },
      },
    ],
  } as TopLevelSpec;
}

/** Reliability diagram: accuracy against mean top-1 confidence per bin, before and after temperature scaling. */
export function reliabilitySpec(c: Calibration): TopLevelSpec {
  const points = [
    ...c.reliabilityBefore.map((b) => ({ ...b, curve: `before (T = 1), ECE ${c.eceBefore.toFixed(3)}` })),
    ...c.reliabilityAfter.map((b) => ({ ...b, curve: `after (T = ${c.temperature.toFixed(2)}), ECE ${c.eceAfter.toFixed(3)}` })),
  ].filter((b) => b.count > 0);
  return {
    $schema: 'https://vega.github.io/schema/vega-lite/v6.json',
    title: { text: 'Reliability diagram', subtitle: `top-1 confidence in ${c.bins} bins; fitted and measured on the ${c.fittedOn}` },
    width: 320,
    height: 260,
    config: baseConfig,
    layer: [
      {
        data: {
          values: [
            { x: 0, y: 0 },
            { x: 1, y: 1 },
          ],
        },
        mark: { type: 'line', strokeDash: [4, 4], color: '#999' },
        encoding: { x: { field: 'x', type: 'quantitative' }, y: { field: 'y', type: 'quantitative' } },
      },
      {
        data: { values: points },
        mark: { type: 'line', point: true },
        encoding: {
          x: { field: 'confidence', type: 'quantitative', title: 'Mean confidence', scale: { domain: [0, 1] } },
          y: { field: 'accuracy', type: 'quantitative', title: 'Accuracy', scale: { domain: [0, 1] } },
          color: { field: 'curve', type: 'nominal', title: null, legend: { orient: 'bottom', direction: 'vertical' } },
          size: { field: 'count', type: 'quantitative', legend: null },
        },
      },
    ],
  } as TopLevelSpec;
}
