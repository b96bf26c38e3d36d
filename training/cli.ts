import { Command } from 'commander';

// Each command lives in its own module exporting `register(program)`.
const commands: Array<() => Promise<{ register: (program: Command) => void }>> = [
  () => import('./commands/train.js'),
  () => import('./commands/evaluate.js'),
  () => import('./commands/predict.js'),
  () => import('./commands/augment-preview.js'),
  () => import('./commands/watch.js'),
  () => import('./commands/start.js'),
  () => import('./commands/demo-data.js'),
  () => import('../functions/commands/serve.js'),
  () => import('./commands/summary.js'),
  () => import('./commands/imagenet.js'),
  () => import('./commands/s3.js'),
  () => import('./commands/upload.js'),
  () => import('./commands/publish.js'),
  () => import('./commands/models.js'),
  () => import('./commands/export.js'),
];

const program = new Command('edgetune')
  .description('Fine-tune MobileNetV2 on a folder of labelled photos and serve it as an HTTPS API.')
  .showHelpAfterError();

for (const load of commands) (await load()).register(program);

await program.parseAsync(process.argv);
