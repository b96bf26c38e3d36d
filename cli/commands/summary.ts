import type { LayersModel } from '@tensorflow/tfjs';
import { type Command, InvalidArgumentError } from 'commander';
import { initBackend } from '../../core/backend.js';
import { ALPHAS, buildMobileNetV2, paramCounts } from '../../core/mobilenet-v2.js';
import { int, num, run } from './options.js';

type AnyLayer = LayersModel['layers'][number];
interface InboundNode {
  inboundLayers: AnyLayer[];
  nodeIndices: number[];
  tensorIndices: number[];
}

/** Keras' print_summary widths for a functional model (line_length 98, positions .33/.55/.67/1). */
const POSITIONS = [32, 53, 65, 98];
const LINE = 98;

function row(fields: string[]): string {
  let line = '';
  fields.forEach((f, i) => {
    line = (line + f).slice(0, POSITIONS[i]);
    line = line.padEnd(POSITIONS[i]);
  });
  return line.trimEnd();
}

function shapeText(shape: unknown): string {
  const one = (s: Array<number | null>) => `(${s.map((d) => (d == null ? 'None' : String(d))).join(', ')}${s.length === 1 ? ',' : ''})`;
  if (Array.isArray(shape) && Array.isArray(shape[0])) return (shape as Array<Array<number | null>>).map(one).join(', ');
  return one(shape as Array<number | null>);
}

const group = (n: number) => n.toLocaleString('en-US');

/** The layers feeding `layer` inside `model`, as Keras prints them: `name[node][tensor]`. */
function connections(layer: AnyLayer): string[] {
  const out: string[] = [];
  for (const node of (layer as unknown as { inboundNodes: InboundNode[] }).inboundNodes) {
    out.push(...node.inboundLayers.map((l, i) => `${l.name}[${node.nodeIndices[i]}][${node.tensorIndices[i]}]`));
  }
  return out;
}

/** A Keras-style summary (Layer (type) / Output Shape / Param # / Connected to) with Keras' totals. */
export function formatSummary(model: LayersModel): string {
  const lines = [
    `Model: "${model.name}"`,
    '_'.repeat(LINE),
    row(['Layer (type)', 'Output Shape', 'Param #', 'Connected to']),
    '='.repeat(LINE),
  ];
  model.layers.forEach((layer, i) => {
    const [first = '', ...rest] = connections(layer);
    lines.push(row([`${layer.name} (${layer.getClassName()})`, shapeText(layer.outputShape), String(layer.countParams()), first]));
    for (const c of rest) lines.push(row(['', '', '', c]));
    lines.push(i === model.layers.length - 1 ? '='.repeat(LINE) : '_'.repeat(LINE));
  });
  const counts = paramCounts(model);
  lines.push(
    `Total params: ${group(counts.total)}`,
    `Trainable params: ${group(counts.trainable)}`,
    `Non-trainable params: ${group(counts.nonTrainable)}`,
    '_'.repeat(LINE),
  );
  return lines.join('\n');
}

function alphaArg(v: string): number {
  const a = num('alpha')(v);
  if (!ALPHAS.includes(a as (typeof ALPHAS)[number])) throw new InvalidArgumentError(`alpha must be one of ${ALPHAS.join(', ')}; got ${v}`);
  return a;
}

export function register(program: Command): void {
  program
    .command('summary')
    .description("Print a Keras-style summary of MobileNetV2 (layers, output shapes, parameters), as keras.applications' model.summary().")
    .option('--alpha <a>', `width multiplier: ${ALPHAS.join(', ')}`, alphaArg, 1.0)
    .option('--size <px>', 'square input size (>= 32)', int('size'), 224)
    .option('--include-top', 'add the 1000-class ImageNet head (global pooling + predictions)', false)
    .addHelpText('after', '\nExample: edgetune summary --include-top   # ends with Total params: 3,538,984')
    .action((o: { alpha: number; size: number; includeTop: boolean }) =>
      run(async () => {
        await initBackend('auto', () => {});
        const model = buildMobileNetV2({ alpha: o.alpha, inputSize: o.size, includeTop: o.includeTop });
        try {
          process.stdout.write(`${formatSummary(model)}\n`);
        } finally {
          model.dispose();
        }
      }),
    );
}
