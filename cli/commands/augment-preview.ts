import { readFile, writeFile } from 'node:fs/promises';
import type { Command } from 'commander';
import { decodeImage } from '../../core/image.js';
import { augmentationGrid } from '../../training/augment-grid.js';
import { DEFAULTS, KERAS_RECIPE } from '../../training/options.js';
import { int, num, run } from './options.js';

export function register(program: Command): void {
  program
    .command('augment-preview')
    .description('Write a 3x3 grid of augmented views of one image (PNG), like the notebook figure.')
    .argument('<image>', 'an image file')
    .requiredOption('--out <png>', 'output PNG path')
    .option('--image-size <px>', `view size (default ${DEFAULTS.imageSize})`, int('image size'))
    .option('--flip <mode>', 'horizontal, vertical, horizontal_and_vertical, none', DEFAULTS.flip)
    .option('--rotation <factor>', `rotation factor (default: Keras' ${KERAS_RECIPE.rotation})`, num('rotation'), KERAS_RECIPE.rotation)
    .option('--zoom <factor>', 'zoom factor', num('zoom'), 0)
    .option('--contrast <factor>', 'contrast factor', num('contrast'), 0)
    .option('--seed <n>', 'seed', int('seed'), DEFAULTS.seed)
    .action((image: string, o: Record<string, never>) =>
      run(async () => {
        const img = await decodeImage(await readFile(image), { size: o.imageSize ?? DEFAULTS.imageSize });
        const png = await augmentationGrid(img, { flip: o.flip, rotation: o.rotation, zoom: o.zoom, contrast: o.contrast }, o.seed);
        await writeFile(o.out, png);
        process.stdout.write(`wrote ${o.out}\n`);
      }),
    );
}
