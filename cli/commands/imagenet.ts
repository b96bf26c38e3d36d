import { readFile } from 'node:fs/promises';
import { createRequire } from 'node:module';
import type { LayersModel } from '@tensorflow/tfjs';
import type { Command } from 'commander';
import { initBackend } from '../../core/backend.js';
import { decodeImage, type RgbImage } from '../../core/image.js';
import { buildMobileNetV2 } from '../../core/mobilenet-v2.js';
import { tf } from '../../core/tf.js';
import {
  applyBaseWeights,
  formatAlpha,
  type LoadedBaseWeights,
  readBaseWeights,
  resolveBaseWeights,
  TOP_LAYER,
} from '../../core/weights/index.js';
import { int, run } from './options.js';

const require = createRequire(import.meta.url);

/** The 1000 ImageNet class names in Keras' order (index 355 is 'llama'), from @tensorflow-models/mobilenet. */
export function imagenetClasses(): string[] {
  // A CJS data file without an exports map; requiring it avoids loading the package's tfjs-core build.
  const { IMAGENET_CLASSES } = require('@tensorflow-models/mobilenet/dist/imagenet_classes.js') as {
    IMAGENET_CLASSES: Record<number, string>;
  };
  const names = Array.from({ length: 1000 }, (_, i) => IMAGENET_CLASSES[i]);
  if (names.some((n) => typeof n !== 'string'))
    throw new Error('@tensorflow-models/mobilenet IMAGENET_CLASSES does not hold 1000 class names');
  return names;
}

export interface ImagenetModel {
  model: LayersModel;
  weights: Omit<LoadedBaseWeights, 'count'>;
  inputSize: number;
}

/**
 * keras.applications.MobileNetV2 with its ImageNet top, weights from `baseWeights` (or the default
 * resolution order with the top required). Fails clearly when the weights have no ImageNet top.
 */
export async function loadImagenetModel(opts: {
  baseWeights?: string;
  inputSize?: number;
  log?: (l: string) => void;
}): Promise<ImagenetModel> {
  const inputSize = opts.inputSize ?? 224;
  const log = opts.log ?? ((l: string) => console.error(l));
  const resolved = await resolveBaseWeights({ baseWeights: opts.baseWeights, inputSize, includeTop: true, log });
  const w = await readBaseWeights(resolved.source, log);
  const kernel = w.weights.get(`${TOP_LAYER}/kernel`);
  if (!kernel || !w.weights.has(`${TOP_LAYER}/bias`)) {
    throw new Error(
      `${resolved.source} has no ImageNet top (${TOP_LAYER}/kernel and ${TOP_LAYER}/bias): the imagenet command needs weights saved with include_top=True ` +
        '(e.g. the shared mobilenet_v2_1.0_224_imagenet model.json, or a keras.applications .h5 without _no_top)',
    );
  }
  const model = buildMobileNetV2({ alpha: w.alpha, inputSize, includeTop: true, classes: kernel.shape[1] });
  try {
    const applied = applyBaseWeights(model, w.weights, `The ${w.kind} weights from ${resolved.source}`);
    if (!applied.top)
      throw new Error(
        `${resolved.source}: ${TOP_LAYER} has shape [${kernel.shape}], expected [${model.getLayer(TOP_LAYER).getWeights()[0].shape}]`,
      );
    if (w.warning) log(`!!! ${w.warning}`);
    return {
      model,
      inputSize,
      weights: {
        source: resolved.source,
        kind: w.kind,
        format: w.format,
        how: w.how,
        sha256: w.sha256,
        alpha: w.alpha,
        warning: w.warning,
        top: true,
        resolvedBy: resolved.origin,
      },
    };
  } catch (e) {
    model.dispose();
    throw e;
  }
}

export interface ClassScore {
  index: number;
  name: string;
  probability: number;
}

/** Top-k ImageNet classes per image; images are RGB 0..255, scaled to [-1, 1] like Keras' preprocess_input. */
export function topK(model: LayersModel, images: RgbImage[], k = 5, classes = imagenetClasses()): ClassScore[][] {
  if (images.length === 0) return [];
  const size = images[0].width;
  const probs = tf.tidy(() => {
    const batch = new Float32Array(images.length * size * size * 3);
    images.forEach((img, i) => {
      if (img.width !== size || img.height !== size) throw new Error('all images must have the model input size');
      batch.set(img.data, i * size * size * 3);
    });
    const x = tf.tensor4d(batch, [images.length, size, size, 3]).div(127.5).sub(1);
    return (model.predict(x) as tf.Tensor).arraySync() as number[][];
  });
  return probs.map((row) =>
    row
      .map((probability, index) => ({ index, probability, name: classes[index] ?? `class ${index}` }))
      .sort((a, b) => b.probability - a.probability)
      .slice(0, k),
  );
}

export function register(program: Command): void {
  program
    .command('imagenet')
    .description(
      'Print the top-5 ImageNet classes of images with a pretrained MobileNetV2 (weights that include the 1000-class top), as the notebook does before transfer learning.',
    )
    .argument('<image...>', 'image files (JPEG, PNG, WebP, GIF, BMP)')
    .option(
      '--base-weights <src>',
      'weights with the ImageNet top: tfjs model.json (path, file://, https://, s3://), Keras .h5 / .weights.h5 or .keras (default: EDGETUNE_BASE_WEIGHTS, then the official Keras file)',
    )
    .option('--size <px>', 'input size', int('size'), 224)
    .option('--top <k>', 'how many classes to print', int('top'), 5)
    .option('--batch <n>', 'images per forward pass', int('batch'), 8)
    .addHelpText(
      'after',
      '\nExample: edgetune imagenet photo.jpg --base-weights ../shared/weights/mobilenet_v2_1.0_224_imagenet/model.json',
    )
    .action((images: string[], o: { baseWeights?: string; size: number; top: number; batch: number }) =>
      run(async () => {
        await initBackend();
        const { model, weights } = await loadImagenetModel({ baseWeights: o.baseWeights, inputSize: o.size });
        process.stderr.write(
          `edgetune: MobileNetV2 alpha ${formatAlpha(weights.alpha)} at ${o.size}, ${weights.kind} weights ${weights.source} (sha256 ${weights.sha256.slice(0, 12)})\n`,
        );
        const classes = imagenetClasses();
        let failed = 0;
        try {
          for (let i = 0; i < images.length; i += o.batch) {
            const chunk = images.slice(i, i + o.batch);
            const decoded: Array<{ file: string; img: RgbImage }> = [];
            for (const file of chunk) {
              try {
                decoded.push({ file, img: await decodeImage(await readFile(file), { size: o.size }) });
              } catch (e) {
                failed++;
                process.stderr.write(`edgetune: skipping ${file}: ${(e as Error).message}\n`);
              }
            }
            const results = topK(
              model,
              decoded.map((d) => d.img),
              o.top,
              classes,
            );
            results.forEach((scores, j) => {
              process.stdout.write(`${decoded[j].file}\n`);
              for (const s of scores) process.stdout.write(`  ${s.probability.toFixed(4)}  ${s.name} (${s.index})\n`);
            });
          }
        } finally {
          model.dispose();
        }
        if (failed) {
          process.stderr.write(`edgetune: ${failed} of ${images.length} image(s) could not be read\n`);
          process.exitCode = 1;
        }
      }),
    );
}
