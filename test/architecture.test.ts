// The import rules of ARCHITECTURE.md, checked on the sources: every relative import (static,
// `export ... from`, and dynamic import()) of the source folders.
import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { REPO_DIR } from './helpers/shared.js';

interface Edge {
  from: string;
  to: string;
}

const ROOTS = ['cli', 'core', 'store', 'training', 'trigger', 'functions', 'infra'];

function files(dir: string): string[] {
  return readdirSync(path.join(REPO_DIR, dir), { withFileTypes: true }).flatMap((e) => {
    const p = `${dir}/${e.name}`;
    if (e.isDirectory()) return files(p);
    return /\.(ts|mjs)$/.test(e.name) && !e.name.endsWith('.d.ts') ? [p] : [];
  });
}

const IMPORT = /(?:\bfrom\s*|\bimport\s*\(\s*|^\s*import\s+)['"](\.{1,2}\/[^'"]+)['"]/gm;

function edges(): Edge[] {
  return ROOTS.flatMap(files).flatMap((from) => {
    const text = readFileSync(path.join(REPO_DIR, from), 'utf8');
    return [...text.matchAll(IMPORT)].map((m) => ({
      from,
      to: path.posix.normalize(path.posix.join(path.posix.dirname(from), m[1])).replace(/\.js$/, '.ts'),
    }));
  });
}

const under = (p: string, dir: string) => p === dir || p.startsWith(`${dir}/`);

/** The rules: [who, may not import, why]. */
const RULES: [string, string, string][] = [
  ['core', 'training', 'core holds what several stages share and imports no stage'],
  ['core', 'functions', 'core holds what several stages share and imports no stage'],
  ['core', 'infra', 'core holds what several stages share and imports no stage'],
  ['core', 'cli', 'core holds what several stages share and imports no stage'],
  ['core', 'trigger', 'core holds what several stages share and imports no stage'],
  ['core', 'store', 'core holds what several stages share and imports no stage'],
  ['store', 'training', 'publishing works on a model folder, not on training internals'],
  ['store', 'functions', 'publishing does not load the API'],
  ['store', 'cli', 'the store is used by the CLI, not the other way round'],
  ['store', 'trigger', 'publishing does not depend on the retrain trigger'],
  ['functions', 'store', 'serving reads current.json through core/model-loader.ts, it does not load the publisher'],
  ['functions', 'training', 'serving must not load training code'],
  ['functions', 'cli', 'serving must not load the CLI'],
  ['training', 'functions', 'training must not depend on the API'],
  ['training', 'cli', 'training is driven by the CLI, not the other way round'],
  ['trigger', 'training', 'the trigger starts training jobs as processes, it does not load training code'],
  ['trigger', 'functions', 'the trigger does not load the API'],
  ['trigger', 'cli', 'the trigger is used by the CLI, not the other way round'],
  ['trigger', 'infra', 'the trigger is runtime code; infra/ (CDK) points at it, not the other way round'],
  ['functions', 'infra', 'runtime code does not load the CDK app'],
  ['functions', 'trigger', 'serving does not load the retrain trigger'],
  ['training', 'infra', 'runtime code does not load the CDK app'],
  ['store', 'infra', 'runtime code does not load the CDK app'],
  ['cli', 'infra', 'runtime code does not load the CDK app'],
];

/**
 * Known exceptions. Each must still exist: the test fails once it is gone, so the list shrinks.
 */
const EXCEPTIONS: Edge[] = [];

function violations(all: readonly Edge[], exceptions: readonly Edge[] = EXCEPTIONS): string[] {
  const excepted = (e: Edge) => exceptions.some((x) => x.from === e.from && x.to === e.to);
  return all.flatMap((e) =>
    RULES.filter(([who, not]) => under(e.from, who) && under(e.to, not) && !excepted(e)).map(
      ([, , why]) => `${e.from} imports ${e.to}: ${why}`,
    ),
  );
}

describe('architecture: which way imports point (ARCHITECTURE.md)', () => {
  const all = edges();

  it('finds the imports it checks', () => {
    expect(all.length).toBeGreaterThan(300);
    expect(all).toContainEqual({ from: 'training/train.ts', to: 'core/backend.ts' });
    expect(all).toContainEqual({ from: 'cli/commands/index.ts', to: 'cli/commands/train.ts' }); // a dynamic import()
  });

  it('core/ imports no stage, serving does not import training, training does not import the API', () => {
    expect(violations(all)).toEqual([]);
  });

  it('reports a violation (the check can fail)', () => {
    expect(violations([{ from: 'core/x.ts', to: 'training/train.ts' }])).toEqual([
      'core/x.ts imports training/train.ts: core holds what several stages share and imports no stage',
    ]);
    expect(violations([{ from: 'functions/app.ts', to: 'training/head.ts' }])).toHaveLength(1);
    expect(violations([{ from: 'functions/app.ts', to: 'cli/commands/serve.ts' }])).toHaveLength(1);
    expect(violations([{ from: 'store/model-store.ts', to: 'training/train.ts' }])).toHaveLength(1);
    expect(violations([{ from: 'trigger/local.ts', to: 'training/job.ts' }])).toHaveLength(1);
    expect(violations([{ from: 'cli/commands/serve.ts', to: 'functions/node.ts' }])).toEqual([]);
  });

  it('every known exception still exists (remove it from the list once the move is done)', () => {
    for (const x of EXCEPTIONS) expect(all, `${x.from} -> ${x.to}`).toContainEqual(x);
    expect(violations(all, [])).toHaveLength(EXCEPTIONS.length);
  });
});
