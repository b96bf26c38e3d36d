// The training processes' V8 flags (cli/node-flags.ts) are on every command line that starts one
// outside our own spawns: the CLI's shebang (npx, the container) and `npm start`.
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { trainCommand } from '../cli/local-system.js';
import { TRAINING_NODE_FLAGS } from '../cli/node-flags.js';

const repo = path.resolve(import.meta.dirname, '..');

describe('training node flags', () => {
  it('are in the shebang of bin/edgetune.mjs (env -S splits them) and in npm start', () => {
    const shebang = readFileSync(path.join(repo, 'bin/edgetune.mjs'), 'utf8').split('\n')[0];
    expect(shebang).toBe(`#!/usr/bin/env -S node ${TRAINING_NODE_FLAGS.join(' ')}`);
    const pkg = JSON.parse(readFileSync(path.join(repo, 'package.json'), 'utf8')) as { scripts: Record<string, string> };
    expect(pkg.scripts.start).toBe(`node ${TRAINING_NODE_FLAGS.join(' ')} bin/edgetune.mjs start`);
  });

  it('start the local system training child', () => {
    const { args } = trainCommand({ dataset: 'd', bucket: 'b', outDir: '/tmp/x' } as never);
    expect(args.slice(0, TRAINING_NODE_FLAGS.length)).toEqual([...TRAINING_NODE_FLAGS]);
    expect(args[TRAINING_NODE_FLAGS.length]).toMatch(/bin[\\/]edgetune\.mjs$/);
  });
});
