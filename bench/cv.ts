// npm run bench:cv: k-fold cross-validation on the alpaca photos (`edgetune cv` in a fresh process per
// configuration), the issue-17 figures: mean, std and 95% interval of accuracy and AUC over seeds x folds;
// and, with --test-split, --restore-best off/on on validation and on an untouched test split.
//
//   npm run bench:cv                                   # the issue's measure: alpha 1.0, seeds 42,7,123, k=5, default and keras (hours here)
//   npm run bench:cv -- --alpha 0.35 --image-size 160 --epochs 5 --fine-tune-epochs 2 --folds 3 --seeds 42   # a small run
//   npm run bench:cv -- --restore-best-test --alpha 0.35 --seeds 42,7,123   # restore-best off/on, validation and test split
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, readFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { TRAINING_NODE_FLAGS } from '../cli/node-flags.js';
import { ManifestSchema } from '../core/manifest.js';
import { summarize } from '../training/cv-stats.js';

const repo = path.resolve(import.meta.dirname, '..');
const shared = process.env.EDGETUNE_SHARED_DIR ?? path.resolve(repo, '../shared');
const data = path.join(shared, 'datasets/alpaca');

const { values } = parseArgs({
  options: {
    alpha: { type: 'string', default: '1.0' },
    seeds: { type: 'string', default: '42,7,123' },
    folds: { type: 'string', default: '5' },
    configs: { type: 'string', default: 'default,keras' },
    'image-size': { type: 'string' },
    epochs: { type: 'string' },
    'fine-tune-epochs': { type: 'string' },
    'restore-best-test': { type: 'boolean', default: false },
    'test-split': { type: 'string', default: '0.2' },
  },
});
const weights = path.join(shared, `weights/mobilenet_v2_${values.alpha}_224_imagenet/model.json`);
if (!existsSync(data) || !existsSync(weights)) {
  console.error(`bench:cv needs ${data} and ${weights}`);
  process.exit(2);
}
const common = [
  '--base-weights',
  weights,
  ...(values['image-size'] ? ['--image-size', values['image-size']] : []),
  ...(values.epochs ? ['--epochs', values.epochs] : []),
  ...(values['fine-tune-epochs'] ? ['--fine-tune-epochs', values['fine-tune-epochs']] : []),
];
const CONFIGS: Record<string, string[]> = { default: [], keras: ['--recipe', 'keras'], 'restore-best': ['--restore-best'] };

function edgetune(args: string[]): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [...TRAINING_NODE_FLAGS, path.join(repo, 'bin/edgetune.mjs'), ...args], {
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    let out = '';
    child.stdout.on('data', (d) => {
      out += d;
    });
    child.on('exit', (code) => (code === 0 ? resolve(out) : reject(new Error(`edgetune ${args[0]} exited ${code}`))));
  });
}

const fmt = (s: ReturnType<typeof summarize>) =>
  `${s.mean.toFixed(4)} ± ${s.std.toFixed(4)} (95% CI ${s.ci95 ? `${s.ci95[0].toFixed(4)}-${s.ci95[1].toFixed(4)}` : 'n/a'}, n=${s.n})`;

if (values['restore-best-test']) {
  // Selection on validation flatters validation: compare on a test split nothing was chosen on.
  const rows: Record<string, { val: number[]; test: number[] }> = { off: { val: [], test: [] }, on: { val: [], test: [] } };
  const tmp = await mkdtemp(path.join(os.tmpdir(), 'edgetune-bench-cv-'));
  for (const seed of values.seeds.split(',')) {
    for (const mode of ['off', 'on'] as const) {
      const out = path.join(tmp, `${mode}-${seed}`);
      await edgetune([
        'train',
        data,
        '--out',
        out,
        '--seed',
        seed,
        '--test-split',
        values['test-split'],
        '--stratified',
        ...common,
        ...(mode === 'on' ? ['--restore-best'] : []),
        '--json',
      ]);
      const m = ManifestSchema.parse(JSON.parse(await readFile(path.join(out, 'manifest.json'), 'utf8')));
      const fin = m.metrics.fineTuned ?? m.metrics.frozen;
      rows[mode].val.push(fin.valAccuracy);
      rows[mode].test.push(m.metrics.test?.valAccuracy ?? Number.NaN);
      console.log(
        `seed ${seed} restore-best ${mode}: val ${fin.valAccuracy.toFixed(4)}, test ${m.metrics.test?.valAccuracy.toFixed(4)} (${m.dataset.counts.test} test images); ${m.selection?.fineTune?.reason ?? ''}`,
      );
    }
  }
  for (const mode of ['off', 'on'] as const) {
    console.log(
      `restore-best ${mode}: validation ${fmt(summarize(rows[mode].val))}; test (selection-free) ${fmt(summarize(rows[mode].test))}`,
    );
  }
} else {
  for (const name of values.configs.split(',')) {
    const flags = CONFIGS[name];
    if (!flags) throw new Error(`unknown config ${name} (${Object.keys(CONFIGS).join(', ')})`);
    const t0 = performance.now();
    const r = JSON.parse(await edgetune(['cv', data, '--folds', values.folds, '--seeds', values.seeds, ...common, ...flags, '--json']));
    const acc = summarize(r.runs.map((x: { accuracy: number }) => x.accuracy));
    const auc = r.auc ? summarize(r.runs.map((x: { auc: number }) => x.auc)) : undefined;
    console.log(
      `${name} (alpha ${values.alpha}, ${values.folds}-fold x seeds ${values.seeds}, ${r.images} images${r.selectionFree ? '' : ', NOT selection-free'}): ` +
        `accuracy ${fmt(acc)}${auc ? `; AUC ${fmt(auc)}` : ''}; views ${r.views.computed} computed / ${r.views.reused} reused; ${((performance.now() - t0) / 1000).toFixed(0)} s`,
    );
  }
}
