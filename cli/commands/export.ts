import type { Command } from 'commander';
import { FORMAT_IDS, parseFormats } from '../../core/export/formats.js';
import { run } from './options.js';

export function register(program: Command): void {
  program
    .command('export')
    .description(
      'Export a trained model to other formats (ONNX, ...), each verified in its own runtime against the float32 tfjs model; records them in exports.json.',
    )
    .argument('<model>', 'model folder, or s3://bucket/models/<name>[/<version>]')
    .requiredOption('--format <ids>', `comma-separated: ${FORMAT_IDS.join(', ')}`)
    .option(
      '--data <folder>',
      'labelled images (class subfolders) to verify on and report accuracy; with int8, half of each class calibrates and the other half verifies',
    )
    .option('--out <dir>', 'output folder (default: the model folder; required for s3://)')
    .option('--json', 'print exports.json')
    .addHelpText(
      'after',
      '\nONNX files take NHWC float32 RGB 0..255 [batch, size, size, 3] and return class probabilities in label order;\n' +
        'preprocessing is inside the graph, class names are in the metadata (edgetune.classes).\n' +
        'int8 (tflite-int8) needs --data: per class, images alternate between calibration and verification (never both;\n' +
        "verification.json's images never calibrate), and the accuracy is measured on the verification half only.\n" +
        'tfjs-float16 writes tfjs-float16/model.json + weights.bin (a tfjs layers model with float16 kernels).',
    )
    .action((modelUri: string, o: { format: string; data?: string; out?: string; json?: boolean }) =>
      run(async () => {
        const ids = parseFormats(o.format);
        const { initBackend } = await import('../../core/backend.js');
        await initBackend();
        const { exportModelFormats } = await import('../../training/export-formats.js');
        const log = (line: string) => process.stderr.write(`${line}\n`);
        const { exports, outDir } = await exportModelFormats(modelUri, ids, { out: o.out, data: o.data, log });
        if (o.json) process.stdout.write(`${JSON.stringify(exports, null, 2)}\n`);
        else process.stdout.write(`exports.json written in ${outDir} (${exports.exports.map((e) => e.format).join(', ')})\n`);
      }),
    );
}
