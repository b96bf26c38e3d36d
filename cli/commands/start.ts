import path from 'node:path';
import type { Command } from 'commander';
import { ensureS3 } from '../../core/s3/client.js';
import { DEFAULT_BUCKET } from '../../core/s3/embedded.js';
import { configFromEnv } from '../../functions/config.js';
import { startNodeServer } from '../../functions/node.js';
import { datasetName, hasCurrentModel, locations, seedDataset, trainCommand, watchUploads } from '../local-system.js';
import { TRAINING_NODE_FLAGS } from '../node-flags.js';
import { num, run } from './options.js';

export function register(program: Command): void {
  program
    .command('start')
    .description(
      'The whole system on this machine (what `npm start` runs): embedded S3, the demo dataset (or --data), ' +
        'train and publish, the API and page on http://localhost:3000, and retraining on every upload.',
    )
    .option('--data <dir>', 'your own dataset folder (one subfolder per class) instead of the generated demo')
    .option('--base-weights <uri>', 'pretrained MobileNetV2 weights (default $EDGETUNE_BASE_WEIGHTS, else the offline fallback)')
    .option('--port <port>', 'API port', num('port'), 3000)
    .option('--s3-port <port>', 'embedded S3 port', num('port'), 4569)
    .option('--quiet <seconds>', 'retrain once uploads have been quiet this long', num('quiet'), 120)
    .option('--refresh <seconds>', 'how often the API looks for a new model version', num('refresh'), 10)
    .option('--retrain', 'train even if a model is already published')
    .argument('[train-flags...]', "extra flags for training, after '--' (e.g. -- --image-size 160 --fine-tune-epochs 3)")
    .action(
      (
        trainFlags: string[],
        o: { data?: string; baseWeights?: string; port: number; s3Port: number; quiet: number; refresh: number; retrain?: boolean },
      ) =>
        run(async () => {
          const log = (line: string) => process.stderr.write(`edgetune: ${line.replace(/^edgetune: /, '')}\n`);
          const t0 = performance.now();
          const s3 = await ensureS3({ log, port: o.s3Port });
          const loc = locations(o.data ? datasetName(o.data) : 'demo', DEFAULT_BUCKET);
          const extra = [...(o.baseWeights ? ['--base-weights', o.baseWeights] : []), ...trainFlags];
          await seedDataset(loc, o.data, log);

          const watcher = watchUploads(s3, { quietMs: o.quiet * 1000, extraArgs: extra, log });
          if (o.retrain || !(await hasCurrentModel(loc))) {
            // After node's flags: the CLI and its arguments.
            const args = trainCommand(loc, extra).args.slice(TRAINING_NODE_FLAGS.length);
            log(`training: ${[path.basename(args[0]), ...args.slice(1)].join(' ')}`);
            const exit = new Promise<number | null>((resolve) =>
              watcher.runner.on('exit', (e) => {
                if (e.dataset === loc.dataset) resolve(e.code);
              }),
            );
            await watcher.runner.submit(loc.dataset);
            const code = await exit;
            if (code !== 0)
              log(`the first training run failed (exit ${code}); the API starts anyway and answers 503 until a model is published`);
          } else {
            log(`a model is already published at ${loc.modelUri}: serving it (--retrain to train again)`);
          }

          const config = configFromEnv({ ...process.env, MODEL_URI: loc.modelUri, MODEL_REFRESH_SECONDS: String(o.refresh) });
          const server = await startNodeServer({ config, port: o.port, hostname: '127.0.0.1', waitForModel: true });
          const seconds = ((performance.now() - t0) / 1000).toFixed(0);
          process.stderr.write(
            [
              '',
              `edgetune is running (ready in ${seconds} s):`,
              `  API and page   ${server.url}/            (docs ${server.url}/docs)`,
              `  model          ${loc.modelUri} (local copy and training report: ${path.join(loc.outDir, 'report', 'index.html')})`,
              `  embedded S3    ${s3.endpoint ?? 'AWS'}  (files under .edgetune/s3)`,
              `  classify       curl -s --data-binary @photo.jpg -H 'content-type: image/jpeg' ${server.url}/v1/classify`,
              `  retrain        npx edgetune upload <folder> ${loc.datasetUri}   (trains ${o.quiet} s after the last upload)`,
              '',
            ].join('\n'),
          );
          await new Promise<void>((resolve) => {
            process.once('SIGINT', () => resolve());
            process.once('SIGTERM', () => resolve());
          });
          log('stopping');
          await server.close();
          await watcher.close();
          await s3.close();
        }),
    );
}
