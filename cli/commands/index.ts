import type { Command } from 'commander';

/** A command module: registers its command (and options) on the program. */
export type CommandModule = { register: (program: Command) => void };

export interface CommandDescriptor {
  /** Usage after the command name, as `edgetune --help` lists it. */
  usage: string;
  description: string;
  load: () => Promise<CommandModule>;
}

/**
 * Every edgetune command, described without importing it: the CLI imports only the module of the
 * command being run (tfjs, sharp, the AWS SDK, s3rver and Hono load only where needed).
 * test/cli.test.ts checks each entry against what its module registers.
 */
export const COMMANDS: Record<string, CommandDescriptor> = {
  train: {
    usage: '[options] <data>',
    description:
      'Fine-tune MobileNetV2 on a folder of class subfolders (or s3://bucket/datasets/<name>/) and export the model, manifest and report.',
    load: () => import('./train.js'),
  },
  job: {
    usage: '[options] [train-flags...]',
    description: "The training container's job (AWS Batch): `edgetune train` on the dataset its environment names.",
    load: () => import('./job.js'),
  },
  cv: {
    usage: '[options] <data>',
    description:
      'Stratified k-fold cross-validation over every image: trains k times per seed and prints mean, std and a 95% t-interval of accuracy and AUC.',
    load: () => import('./cv.js'),
  },
  evaluate: {
    usage: '[options] <model> <data>',
    description: "Evaluate a saved model on a folder whose class subfolders carry the model's class names.",
    load: () => import('./evaluate.js'),
  },
  predict: {
    usage: '[options] <model> <images...>',
    description: 'Print the label and class probabilities for each image.',
    load: () => import('./predict.js'),
  },
  review: {
    usage: '[options] <model>',
    description:
      'List the photos of a folder the model gets wrong, calls unknown, or finds near-duplicated across folders, as a label CSV (path,label,...) to correct and feed back with --labels.',
    load: () => import('./review.js'),
  },
  'augment-preview': {
    usage: '[options] <image>',
    description: 'Write a 3x3 grid of augmented views of one image (PNG), like the notebook figure.',
    load: () => import('./augment-preview.js'),
  },
  watch: {
    usage: '[options] [train-flags...]',
    description:
      'Retrain when a dataset is uploaded under s3://<bucket>/datasets/<name>/: the same debounced trigger as on AWS, with the training job in a local child process instead of AWS Batch. Uses the embedded S3 unless EDGETUNE_S3_ENDPOINT is set.',
    load: () => import('./watch.js'),
  },
  start: {
    usage: '[options] [train-flags...]',
    description:
      'The whole system on this machine (what `npm start` runs): embedded S3, the demo dataset (or --data), train and publish, the API and page on http://localhost:3000, and retraining on every upload.',
    load: () => import('./start.js'),
  },
  'demo-data': {
    usage: '[options] <out-dir>',
    description:
      'Generate a seeded, labelled demo dataset of photo-like shape images (circles, squares, triangles, stars, crosses, crescents) as JPEGs in class subfolders, ready for `edgetune train`.',
    load: () => import('./demo-data.js'),
  },
  serve: {
    usage: '[options]',
    description:
      'Serve the classify API on Node (the same Hono app as Lambda and Lambda@Edge): POST /v1/classify, the upload page at /, the API reference at /docs. Options default to the env vars named in brackets.',
    load: () => import('./serve.js'),
  },
  summary: {
    usage: '[options]',
    description: "Print a Keras-style summary of MobileNetV2 (layers, output shapes, parameters), as keras.applications' model.summary().",
    load: () => import('./summary.js'),
  },
  imagenet: {
    usage: '[options] <image...>',
    description:
      'Print the top-5 ImageNet classes of images with a pretrained MobileNetV2 (weights that include the 1000-class top), as the notebook does before transfer learning.',
    load: () => import('./imagenet.js'),
  },
  s3: {
    usage: '[options]',
    description:
      'Run the embedded S3 server (s3rver behind a SigV4-verifying guard) in the foreground; objects are plain files under --dir.',
    load: () => import('./s3.js'),
  },
  upload: {
    usage: '[options] <dir> <s3uri>',
    description: 'Upload a dataset folder (one subfolder per class) to S3, skipping files already there with the same content.',
    load: () => import('./upload.js'),
  },
  publish: {
    usage: '[options] <model-dir> <s3uri>',
    description: 'Publish a trained model folder as a new verified version in the S3 model store, promoting it through the gate.',
    load: () => import('./publish.js'),
  },
  models: {
    usage: '[options] [command]',
    description: 'Manage the versions of a model in the S3 store (s3://bucket/models/<name>).',
    load: () => import('./models.js'),
  },
  export: {
    usage: '[options] <model>',
    description:
      'Export a trained model to other formats (ONNX, ...), each verified in its own runtime against the float32 tfjs model; records them in exports.json.',
    load: () => import('./export.js'),
  },
  weights: {
    usage: '[options] [command]',
    description: 'Look into base weights files.',
    load: () => import('./weights.js'),
  },
};

/** The command an argv runs (`edgetune help <cmd>` included), if it names one. */
export function commandOf(args: readonly string[]): string | undefined {
  const first = args.find((a) => !a.startsWith('-'));
  if (first === 'help') return args[args.indexOf('help') + 1];
  return first;
}
