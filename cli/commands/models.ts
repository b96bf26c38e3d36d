import type { Command } from 'commander';
import { ensureS3 } from '../../core/s3/client.js';
import { listVersions, promoteVersion, rollback } from '../../store/model-store.js';
import { run } from './options.js';

async function withS3(body: () => Promise<void>): Promise<void> {
  const s3 = await ensureS3();
  try {
    await body();
  } finally {
    await s3.close();
  }
}

export function register(program: Command): void {
  const models = program.command('models').description('Manage the versions of a model in the S3 store (s3://bucket/models/<name>).');

  models
    .command('list')
    .description('List versions, oldest first; * marks the current one. Only versions with a verified marker count.')
    .argument('<s3uri>', 'e.g. s3://edgetune/models/alpaca')
    .option('--json', 'print JSON')
    .action((uri: string, opts: { json?: boolean }) =>
      run(() =>
        withS3(async () => {
          const { versions, current } = await listVersions(uri);
          if (opts.json) {
            console.log(JSON.stringify({ current, versions }, null, 2));
            return;
          }
          if (!versions.length) {
            console.log(`no versions under ${uri}`);
            return;
          }
          console.log(
            [
              '',
              'version'.padEnd(26),
              'valAcc'.padStart(7),
              'quant'.padStart(8),
              'qAcc'.padStart(7),
              'weights'.padStart(11),
              '  trained at',
            ].join(' '),
          );
          for (const v of versions) {
            const acc = v.valAccuracy === undefined ? '' : v.valAccuracy.toFixed(4);
            console.log(
              [
                v.current ? '*' : ' ',
                v.version.padEnd(26),
                acc.padStart(7),
                (v.quantization ?? '-').padStart(8),
                (v.quantizedAccuracy?.toFixed(4) ?? '').padStart(7),
                String(v.weightBytes ?? '').padStart(11),
                ` ${!v.complete ? 'INCOMPLETE (no manifest.json)' : !v.verified ? 'UNVERIFIED (no verified.json: not counted)' : (v.createdAt ?? '')}`,
              ].join(' '),
            );
          }
          console.log(
            "valAcc: the training run's validation accuracy; qAcc: accuracy with the published (quantized) weights, see --json for what it was measured on",
          );
          if (current) console.log(`current: ${current.version} since ${current.promotedAt} (${current.reason})`);
          else console.log('current: none promoted yet');
        }),
      ),
    );

  models
    .command('promote')
    .description('Make a stored, verified version current (its weights are checked again first).')
    .argument('<s3uri>', 'e.g. s3://edgetune/models/alpaca')
    .argument('<version>', 'a version from `models list`')
    .action((uri: string, version: string) =>
      run(() => withS3(async () => void (await promoteVersion(uri, version, { log: (l) => console.log(l) })))),
    );

  models
    .command('rollback')
    .description('Make the newest verified, previously current version current again.')
    .argument('<s3uri>', 'e.g. s3://edgetune/models/alpaca')
    .action((uri: string) => run(() => withS3(async () => void (await rollback(uri, { log: (l) => console.log(l) })))));
}
