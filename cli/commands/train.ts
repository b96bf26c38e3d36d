import { type Command, InvalidArgumentError } from 'commander';
import { FORMAT_IDS, parseFormats } from '../../core/export/formats.js';
import { hasWriter } from '../../core/export/writers.js';
// The TFLite writers register themselves on import: --export must see them when it parses.
import '../../core/export/tflite/register.js';
import { parseBytes } from '../../training/cache-budget.js';
import '../../core/export/tfjs-float16.js';
import type { PublishFlags } from '../../training/job.js';
import { DEFAULTS, KERAS_RECIPE, resolveTrainOptions, type TrainOptions } from '../../training/options.js';
import { humanReporter, jsonReporter } from '../../training/progress.js';
import { engineOption, int, num, run, TRAIN_ENGINE_HELP } from './options.js';

function exportOption(v: string) {
  try {
    const ids = parseFormats(v);
    const unbuilt = ids.filter((id) => id !== 'tfjs' && !hasWriter(id));
    if (unbuilt.length) throw new Error(`format ${unbuilt.join(', ')} is not built yet`);
    return ids.filter((id) => id !== 'tfjs');
  } catch (e) {
    throw new InvalidArgumentError((e as Error).message);
  }
}

function bytesOption(v: string) {
  try {
    return parseBytes(v);
  } catch (e) {
    throw new InvalidArgumentError((e as Error).message);
  }
}

export function register(program: Command): void {
  program
    .command('train')
    .description(
      'Fine-tune MobileNetV2 on a folder of class subfolders (or s3://bucket/datasets/<name>/) and export the model, manifest and report.',
    )
    .argument('<data>', 'dataset folder with one subfolder per class, or s3://bucket/datasets/<name>/')
    .requiredOption('-o, --out <dir>', 'output model folder')
    .option(
      '--labels <file>',
      'labels from a manifest instead of class folders: CSV/TSV with a header (path|file|filename|image, label|class, optional split) or JSON Lines; paths relative to <data>',
    )
    .option('--name <name>', 'model name (default: the dataset folder name)')
    .option(
      '--base-weights <uri>',
      'pretrained MobileNetV2: tfjs model.json (path, file://, https://, s3://) or Keras .h5; default $EDGETUNE_BASE_WEIGHTS, then the Keras cache, then nsfwjs',
    )
    .option('--alpha <a>', 'width multiplier when the weights do not fix it (0.35, 0.5, 0.75, 1.0, 1.3, 1.4)', num('alpha'))
    .option('--recipe <recipe>', `'keras' sets the notebook's values exactly (${JSON.stringify(KERAS_RECIPE)})`)
    .option('--image-size <px>', `input size (default ${DEFAULTS.imageSize})`, int('image size'))
    .option('--resize <mode>', "'stretch' (like Keras) or 'crop' to the aspect ratio first")
    .option('--batch-size <n>', `batch size (default ${DEFAULTS.batchSize})`, int('batch size'))
    .option('--epochs <n>', `phase 1 epochs, base frozen (default ${DEFAULTS.epochs})`, int('epochs'))
    .option('--fine-tune-epochs <n>', `phase 2 epochs (default ${DEFAULTS.fineTuneEpochs})`, int('fine-tune epochs'))
    .option(
      '--fine-tune-at <layer>',
      `first trainable layer of the base's 155 in phase 2 (default ${DEFAULTS.fineTuneAt})`,
      int('fine-tune-at'),
    )
    .option('--lr <lr>', `phase 1 Adam learning rate (default ${DEFAULTS.lr})`, num('lr'))
    .option('--fine-tune-lr <lr>', `phase 2 Adam learning rate (default ${DEFAULTS.fineTuneLr})`, num('fine-tune lr'))
    .option(
      '--fine-tune-schedule <s>',
      `phase 2 learning rate over the steps: constant or cosine (decays to 0) (default ${DEFAULTS.fineTuneSchedule}; Keras recipe constant)`,
    )
    .option('--dropout <rate>', `dropout before the classifier (default ${DEFAULTS.dropout})`, num('dropout'))
    .option('--validation-split <f>', `validation share (default ${DEFAULTS.validationSplit})`, num('validation split'))
    .option('--stratified', 'split each class separately')
    .option(
      '--test-split <f>',
      'share held out as an untouched test split: evaluated once at the end, never used to choose; the promotion gate uses it (default: none)',
      num('test split'),
    )
    .option('--restore-best', "keep each phase's epoch of lowest validation loss (Keras restore_best_weights; default: the last epoch)")
    .option('--patience <n>', 'stop a phase after n epochs without a lower validation loss (default: run every epoch)', int('patience'))
    .option('--class-weight <w>', 'loss weight per class: balanced (n / (classes * count)), none, or <class>=<w>,... (default none)')
    .option(
      '--temperature <mode>',
      'temperature scaling of served probabilities: fit (applied) or off (fitted and reported, T = 1 served) (default off: it made held-out calibration worse on alpaca)',
    )
    .option('--seed <n>', `seed for the split, shuffling and augmentation (default ${DEFAULTS.seed})`, int('seed'))
    .option('--flip <mode>', `random flip: horizontal, vertical, horizontal_and_vertical, none (default ${DEFAULTS.flip})`)
    .option('--rotation <factor>', `random rotation, fraction of a turn (default ${DEFAULTS.rotation}; Keras recipe 0.2)`, num('rotation'))
    .option('--zoom <factor>', 'random zoom factor (default 0)', num('zoom'))
    .option('--contrast <factor>', 'random contrast factor (default 0)', num('contrast'))
    .option('--no-augment', 'no augmentation at all')
    .option('--augment-frozen', 'augment phase 1 too (the Keras recipe does; default: phase 1 on un-augmented features)')
    .option(
      '--frozen-views <n>',
      'with --augment-frozen: n augmented view sets cycled over the phase-1 epochs (default: a new set every epoch)',
      int('frozen views'),
    )
    .option(
      '--workers <n>',
      `threads for the frozen forward pass and the fine-tuning step (default ${DEFAULTS.workers}; 0: all in this thread)`,
      int('workers'),
    )
    .option(
      '--cache-budget <size>',
      'memory for decoded images, features and views, e.g. 512M, 2G; the rest is cached on disk (default: 256M, a quarter of the memory limit below 1G)',
      bytesOption,
    )
    .option('--cache-dir <dir>', 'folder for the disk cache (default: the OS temp folder; removed after the run)')
    .option('--engine <name>', TRAIN_ENGINE_HELP, engineOption)
    .option('--export <ids>', `after training: export and verify these formats into --out (${FORMAT_IDS.join(', ')})`, exportOption)
    .option('--publish <s3uri>', 'after training: verify, publish to s3://bucket/models/<name> and promote through the gate')
    .option('--checkpoint <uri>', 'write a checkpoint after every epoch and resume from it (s3:// or a folder)')
    .option('--quantize <dtype>', 'weights when publishing: none, float16, uint8 (default float16)')
    .option('--tolerance <f>', 'publish: allowed validation accuracy drop (gate and quantization)', num('tolerance'))
    .option('--force', 'publish: promote even if worse than the current version')
    .option('--json', 'one JSON event per line instead of progress bars')
    .action((data: string, o: Record<string, unknown>) =>
      run(async () => {
        // Flag names are TrainOptions keys; resolveTrainOptions validates them (zod) and drops the rest.
        const { augment, quantize, tolerance, force, engine, ...flags } = o;
        if (engine) process.env.EDGETUNE_ENGINE = engine as string;
        const opts = resolveTrainOptions({
          ...(flags as Partial<TrainOptions> & { out: string }),
          data,
          ...(augment === false ? { flip: 'none', rotation: 0, zoom: 0, contrast: 0 } : {}),
        });
        const report = opts.json ? jsonReporter() : humanReporter();
        const { runTraining } = await import('../../training/job.js');
        await runTraining(opts, report, {
          quantize: quantize as PublishFlags['quantize'],
          tolerance: tolerance as number | undefined,
          force: force as boolean | undefined,
        });
      }),
    );
}
