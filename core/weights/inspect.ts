import { formatAlpha } from './alpha.js';
import { BASE_LAYERS, classifyLayerName } from './mobilenet-layers.js';
import type { RawWeights, SourceWeights, WeightsFormat } from './types.js';

const FORMAT_TEXT: Record<WeightsFormat, string> = {
  tfjs: 'TensorFlow.js layers model (model.json + weight shards)',
  'keras2-weights': 'Keras 2 HDF5 weights (save_weights; the keras.applications release files)',
  'keras2-full-model': 'Keras 2 HDF5 full model (model.save; weights under model_weights)',
  'keras3-weights': 'Keras 3 .weights.h5 (layers/<class>/vars/<i>)',
  'keras-archive': 'Keras 3 .keras archive (zip: config.json + model.weights.h5)',
  nsfwjs: 'the MobileNetV2 bundled in the nsfwjs npm package (tfjs, uint8-quantized)',
};

/** What `edgetune weights inspect` reports about a weights source. */
export interface WeightsReport {
  source: string;
  format: WeightsFormat;
  formatText: string;
  sha256: string;
  /** Weighted layers and tensors as stored (before matching). */
  storedLayers: number;
  storedTensors: number;
  /** The stored layer names by naming generation: today's, legacy (release files), the same in both (Conv1, bn_Conv1, Conv_1, Conv_1_bn), the top, other. */
  names: { modern: number; legacy: number; shared: number; top: number; other: number };
  notes: string[];
  /** Set when the source matches MobileNetV2 (see matchMobileNetV2). */
  match?: { naming: SourceWeights['naming']; alpha: number; top: boolean; tensors: number; how: string; ignored: string[] };
  /** Why it does not match, when it does not. */
  error?: string;
}

export function weightsReport(raw: RawWeights, matched: SourceWeights | Error): WeightsReport {
  const names = { modern: 0, legacy: 0, shared: 0, top: 0, other: 0 };
  for (const l of raw.layers) {
    const { generation: g, index } = classifyLayerName(l.name);
    if (g === 'modern' && BASE_LAYERS[index as number].legacy === l.name) names.shared++;
    else names[g === 'unknown' ? 'other' : g]++;
  }
  return {
    source: raw.source,
    format: raw.format,
    formatText: FORMAT_TEXT[raw.format],
    sha256: raw.sha256,
    storedLayers: raw.layers.length,
    storedTensors: raw.layers.reduce((n, l) => n + l.weights.length, 0),
    names,
    notes: raw.notes,
    ...(matched instanceof Error
      ? { error: matched.message }
      : {
          match: {
            naming: matched.naming,
            alpha: matched.alpha,
            top: matched.top,
            tensors: matched.weights.size,
            how: matched.how,
            ignored: matched.ignored,
          },
        }),
  };
}

const NAMING_TEXT: Record<SourceWeights['naming'], string> = {
  modern: "today's keras.applications names",
  legacy: 'legacy names of the original MobileNetV2 release files (mobl{i}_conv_{i}_*, bn{i}_conv_{i}_bn_*)',
  mixed: 'a mix of legacy and today’s names',
  unnamed: 'names that are not MobileNetV2’s (matched by order, as Keras does)',
};

export function formatWeightsReport(r: WeightsReport): string {
  const lines = [
    `source     ${r.source}`,
    `format     ${r.formatText}`,
    `sha256     ${r.sha256}`,
    `stored     ${r.storedLayers} weighted layers, ${r.storedTensors} tensors (names: ${r.names.modern} today's, ${r.names.legacy} legacy, ${r.names.shared} the same in both, ${r.names.top} top, ${r.names.other} other)`,
  ];
  for (const n of r.notes) lines.push(`found      ${n}`);
  if (r.match) {
    lines.push(
      `naming     ${NAMING_TEXT[r.match.naming]}`,
      `alpha      ${formatAlpha(r.match.alpha)}`,
      `top        ${r.match.top ? 'ImageNet top present (usable by `edgetune imagenet`)' : 'no ImageNet top (a base only: fine for training)'}`,
      `tensors    ${r.match.tensors} MobileNetV2 tensors`,
      `match      ${r.match.how}`,
    );
  } else lines.push(`match      FAILS: ${r.error}`);
  return lines.join('\n');
}
