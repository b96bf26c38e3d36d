import { readFile } from 'node:fs/promises';
import type { Command } from 'commander';
import { initBackend } from '../../core/backend.js';
import { decodeImage } from '../../core/image.js';
import { loadModel } from '../../core/model-loader.js';
import { predictProbabilities } from '../../training/export.js';
import { run } from './options.js';

export function register(program: Command): void {
  program
    .command('predict')
    .description('Print the label and class probabilities for each image.')
    .argument('<model>', 'model folder, or s3://bucket/models/<name>[/<version>]')
    .argument('<images...>', 'image files')
    .option('--json', 'print one JSON object per image')
    .action((modelUri: string, images: string[], o: { json?: boolean }) =>
      run(async () => {
        await initBackend();
        const { model, manifest } = await loadModel(modelUri);
        for (const file of images) {
          let line: string;
          try {
            const img = await decodeImage(await readFile(file), { size: manifest.input.size, resize: manifest.input.resize });
            const [probs] = await predictProbabilities(model, [img], manifest.classes.length);
            const ranked = manifest.classes.map((label, i) => ({ label, score: probs[i] })).sort((a, b) => b.score - a.score);
            line = o.json
              ? JSON.stringify({ file, label: ranked[0].label, score: ranked[0].score, predictions: ranked })
              : `${file}: ${ranked[0].label} (${ranked.map((r) => `${r.label} ${r.score.toFixed(4)}`).join(', ')})`;
          } catch (e) {
            process.exitCode = 1;
            line = o.json ? JSON.stringify({ file, error: (e as Error).message }) : `${file}: error: ${(e as Error).message}`;
          }
          process.stdout.write(`${line}\n`);
        }
        model.dispose();
      }),
    );
}
