import { type Command, InvalidArgumentError } from 'commander';
import { DEFAULTS, KERAS_RECIPE, resolveTrainOptions, type TrainOptions } from '../../training/options.js';
import { humanReporter, jsonReporter } from '../../training/progress.js';
import { int, num, run } from './options.js';

function seedList(v: string): number[] {
  const seeds = v.split(',').map((s) => Number(s.trim()));
  if (!seeds.length || seeds.some((s) => !Number.isInteger(s)))
    throw new InvalidArgumentError(`--seeds: integers separated by commas; got '${v}'`);
  if (new Set(seeds).size !== seeds.length) throw new InvalidArgumentError(`--seeds: a seed is repeated in '${v}'`);
  return seeds;
}

export function register(program: Command): void {
  program
    .command('cv')
    .description(
      'Stratified k-fold cross-validation over every image: trains k times per seed and prints mean, std and a 95% t-interval of accuracy and AUC.',
    )
    .argument('<data>', 'dataset folder with one subfolder per class')
    .option('--folds <k>', 'number of folds (default 5)', int('folds'), 5)
    .option('--seeds <list>', `seeds, one k-fold each, e.g. 42,7,123 (default ${DEFAULTS.seed})`, seedList)
    .option('--out <dir>', "keep each fold's model folder under this folder (default: a temporary folder, removed)")
    .option('--base-weights <uri>', 'pretrained MobileNetV2 (as for train)')
    .option('--alpha <a>', 'width multiplier when the weights do not fix it', num('alpha'))
    .option('--recipe <recipe>', `'keras' sets the notebook's values (${JSON.stringify(KERAS_RECIPE)})`)
    .option('--image-size <px>', `input size (default ${DEFAULTS.imageSize})`, int('image size'))
    .option('--batch-size <n>', `batch size (default ${DEFAULTS.batchSize})`, int('batch size'))
    .option('--epochs <n>', `phase 1 epochs (default ${DEFAULTS.epochs})`, int('epochs'))
    .option('--fine-tune-epochs <n>', `phase 2 epochs (default ${DEFAULTS.fineTuneEpochs})`, int('fine-tune epochs'))
    .option('--fine-tune-at <layer>', `first trainable base layer in phase 2 (default ${DEFAULTS.fineTuneAt})`, int('fine-tune-at'))
    .option('--restore-best', "keep each phase's epoch of lowest validation loss (the fold scores are then not selection-free)")
    .option('--patience <n>', 'stop a phase after n epochs without a lower validation loss', int('patience'))
    .option('--class-weight <w>', 'balanced, none, or <class>=<w>,...')
    .option('--workers <n>', `frozen-layer worker threads (default ${DEFAULTS.workers})`, int('workers'))
    .option('--json', 'print the result as JSON on stdout (progress as JSON lines on stderr)')
    .action((data: string, o: Record<string, unknown>) =>
      run(async () => {
        const { folds, seeds, out, json, ...flags } = o as { folds: number; seeds?: number[]; out?: string; json?: boolean };
        const opts = resolveTrainOptions({ ...(flags as Partial<TrainOptions>), data, out: out ?? '.' });
        const report = json ? jsonReporter((l) => process.stderr.write(`${l}\n`)) : humanReporter();
        const { crossValidate, formatCv } = await import('../../training/cv.js');
        const r = await crossValidate(opts, { folds, seeds: seeds ?? [opts.seed], out }, report);
        process.stdout.write(json ? `${JSON.stringify(r, null, 2)}\n` : `${formatCv(r)}\n`);
      }),
    );
}
