import { buildClassifier } from '../core/classifier.js';
import type { LayersModel } from '../core/tf.js';
import { applyBaseWeights, readBaseWeights, resolveBaseWeights } from '../core/weights/index.js';
import type { TrainOptions } from './options.js';
import type { Reporter } from './progress.js';
import { deriveSeed } from './rng.js';

/** Where the pretrained base came from, for the manifest and the checkpoint's run key. */
export interface BaseInfo {
  source: string;
  kind: string;
  sha256: string;
  alpha: number;
  warning?: string;
}

/** The classifier with the pretrained base applied (the source arrays are released right after). */
export async function buildModel(
  opts: TrainOptions,
  numClasses: number,
  report: Reporter,
): Promise<{ model: LayersModel; base: BaseInfo }> {
  const info = (message: string) => message.trim() && report({ type: 'info', message });
  const resolved = await resolveBaseWeights({ baseWeights: opts.baseWeights, alpha: opts.alpha, inputSize: opts.imageSize, log: info });
  const loaded = await readBaseWeights(resolved.source, info);
  if (opts.alpha !== undefined && opts.alpha !== loaded.alpha) {
    throw new Error(`--alpha ${opts.alpha} does not match the weights in ${loaded.source} (alpha ${loaded.alpha})`);
  }
  if (loaded.warning) report({ type: 'warning', message: loaded.warning });
  const model = buildClassifier({
    alpha: loaded.alpha,
    inputSize: opts.imageSize,
    numClasses,
    dropout: opts.dropout,
    seed: deriveSeed(opts.seed, 'init:head'),
  });
  applyBaseWeights(model, loaded.weights, `the ${loaded.kind} weights from ${loaded.source}`);
  // Let the source arrays go (they can be 14 MB+).
  loaded.weights = new Map();
  report({
    type: 'info',
    message: `base: MobileNetV2 alpha ${loaded.alpha} at ${opts.imageSize}x${opts.imageSize}, weights ${loaded.kind} from ${loaded.source}`,
  });
  const { source, kind, sha256, alpha, warning } = loaded;
  return { model, base: { source, kind, sha256, alpha, warning } };
}
