import type { Command } from 'commander';
import { DEMO_CLASSES, generateDemoDataset } from '../../training/demo-data.js';
import { int, run } from './options.js';

export function register(program: Command): void {
  program
    .command('demo-data')
    .description(
      `Generate a seeded, labelled demo dataset of photo-like shape images (${DEMO_CLASSES.join(', ')}) as JPEGs in class subfolders, ready for \`edgetune train\`.`,
    )
    .argument('<out-dir>', 'output folder (created; must be empty unless --force)')
    .option('--classes <n>', `number of classes, 2..${DEMO_CLASSES.length}`, int('classes'), 2)
    .option('--per-class <k>', 'images per class', int('per-class'), 60)
    .option('--size <px>', 'image width and height in pixels', int('size'), 192)
    .option('--seed <n>', 'seed: the same seed gives byte-identical files', int('seed'), 42)
    .option('--force', "write into a non-empty folder, replacing this generator's own files")
    .option('--json', 'print the result as JSON')
    .action((outDir: string, o: { classes: number; perClass: number; size: number; seed: number; force?: boolean; json?: boolean }) =>
      run(async () => {
        const t0 = performance.now();
        const r = await generateDemoDataset(outDir, o);
        const seconds = (performance.now() - t0) / 1000;
        if (o.json) {
          process.stdout.write(
            `${JSON.stringify({ root: r.root, classes: r.classes, counts: r.counts, images: r.files.length, seconds })}\n`,
          );
        } else {
          const counts = r.classes.map((c) => `${c} ${r.counts[c]}`).join(', ');
          process.stdout.write(
            `wrote ${r.files.length} images (${counts}) at ${o.size}x${o.size} to ${r.root} in ${seconds.toFixed(1)} s\n`,
          );
        }
      }),
    );
}
