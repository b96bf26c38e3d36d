import type { Command } from 'commander';
import { InvalidArgumentError } from 'commander';
import { type FormatId, parseFormats } from '../../core/export/formats.js';
import type { QuantizeDtype } from '../../core/quantize.js';
import { ensureS3 } from '../../core/s3/client.js';
import { publishModel } from '../../store/model-store.js';
import { num, run } from './options.js';

export function quantizeOption(v: string): QuantizeDtype {
  if (v !== 'none' && v !== 'float16' && v !== 'uint8')
    throw new InvalidArgumentError(`--quantize must be none, float16 or uint8; got '${v}'`);
  return v;
}

export function register(program: Command): void {
  program
    .command('publish')
    .description('Publish a trained model folder as a new verified version in the S3 model store, promoting it through the gate.')
    .argument('<model-dir>', 'folder with model.json, weights, manifest.json, verification.json (and report/)')
    .argument('<s3uri>', 'model location, e.g. s3://edgetune/models/alpaca')
    .option('--quantize <dtype>', 'weight quantization: none | float16 | uint8', quantizeOption, 'float16')
    .option('--tolerance <x>', 'promote when val accuracy >= current - x', num('--tolerance'), 0.01)
    .option('--quantize-tolerance <x>', 'refuse when quantization lowers accuracy by more than x', num('--quantize-tolerance'), 0.005)
    .option('--force', 'promote even when the gate says no', false)
    .option(
      '--formats <ids>',
      "export formats to upload with the version, from the folder's exports.json (`edgetune export` first), e.g. tfjs,onnx,tflite-int8",
      (v: string) => {
        try {
          return parseFormats(v);
        } catch (e) {
          throw new InvalidArgumentError((e as Error).message);
        }
      },
    )
    .addHelpText(
      'after',
      '\nSteps: quantize -> upload every file (manifest.json last) -> read back and check sha256 of each weight file\n' +
        '-> load from S3 and reproduce verification.json -> gate -> switch current.json. A failure at any step leaves\n' +
        'current.json unchanged. Without EDGETUNE_S3_ENDPOINT or AWS credentials an embedded S3 is started.\n' +
        'Quantization accuracy here is measured on the verification samples; `edgetune train --publish` measures it\n' +
        'on the validation set.\n' +
        '--formats uploads each exported file under <version>/formats/ with its sha256 in manifest.json (formats), reads\n' +
        'it back and checks it; a format missing from exports.json (or changed since) fails before anything is uploaded.\n' +
        'The API serves them at GET /v1/model/files/{format}.\n',
    )
    .action(
      (
        dir: string,
        uri: string,
        opts: { quantize: QuantizeDtype; tolerance: number; quantizeTolerance: number; force: boolean; formats?: FormatId[] },
      ) =>
        run(async () => {
          const s3 = await ensureS3();
          try {
            const r = await publishModel(dir, uri, {
              quantize: opts.quantize,
              tolerance: opts.tolerance,
              quantizeTolerance: opts.quantizeTolerance,
              force: opts.force,
              formats: opts.formats,
              log: (l) => console.error(l),
            });
            console.log(`${r.promoted ? 'published and promoted' : 'published, NOT promoted'}: ${r.uri}`);
            console.log(`  ${r.reason}`);
            const q = r.quantization;
            console.log(
              `  weights ${q.dtype}: ${q.unquantizedWeightBytes} -> ${q.weightBytes} bytes; accuracy ${q.unquantizedValAccuracy.toFixed(4)} -> ${q.valAccuracy.toFixed(4)} on ${q.measuredOn}`,
            );
            for (const f of r.formats) {
              const fig = f.maxAbsDiff !== undefined ? `, max |dp| ${f.maxAbsDiff.toExponential(2)}` : '';
              const acc = f.accuracy !== undefined ? `, accuracy ${f.accuracy.toFixed(4)}` : '';
              console.log(`  format ${f.id}: ${f.file} ${f.bytes} bytes${fig}${acc}`);
            }
            console.log(
              `  timings ms: ${Object.entries(r.timings)
                .map(([k, v]) => `${k} ${v}`)
                .join(', ')}`,
            );
          } finally {
            await s3.close();
          }
        }),
    );
}
