import { execFileSync } from 'node:child_process';
import { readdirSync } from 'node:fs';
import path from 'node:path';
import { Command } from 'commander';
import { describe, expect, it } from 'vitest';
import { COMMANDS, commandOf } from '../cli/commands/index.js';
import { REPO_DIR } from './helpers/shared.js';

describe('the CLI loads commands lazily from descriptors', () => {
  it('each descriptor matches what its module registers (name, usage, description)', async () => {
    for (const [name, c] of Object.entries(COMMANDS)) {
      const program = new Command('edgetune');
      (await c.load()).register(program);
      expect(program.commands.map((x) => x.name())).toEqual([name]);
      const cmd = program.commands[0];
      expect({ name, usage: cmd.usage(), description: cmd.description() }).toEqual({ name, usage: c.usage, description: c.description });
    }
  }, 60_000);

  it('every command module in cli/commands has a descriptor', () => {
    const files = readdirSync(path.join(REPO_DIR, 'cli/commands'))
      .filter((f) => f.endsWith('.ts') && !['index.ts', 'options.ts'].includes(f))
      .map((f) => f.replace(/\.ts$/, ''));
    for (const f of files) expect(Object.keys(COMMANDS)).toContain(f);
  });

  it('picks the command of an argv', () => {
    expect(commandOf(['--json', 'train', 'data', '-o', 'x'])).toBe('train');
    expect(commandOf(['help', 'models'])).toBe('models');
    expect(commandOf(['--help'])).toBeUndefined();
  });

  it('`edgetune --help` lists every command with its usage and description', () => {
    const out = execFileSync(process.execPath, [path.join(REPO_DIR, 'bin/edgetune.mjs'), '--help'], { encoding: 'utf8' }).replace(
      /\s+/g,
      ' ',
    );
    for (const [name, c] of Object.entries(COMMANDS)) {
      expect(out).toContain(`${name} ${c.usage}`);
      expect(out).toContain(c.description.split(' ').slice(0, 6).join(' '));
    }
  }, 60_000);

  it('`train --export` accepts every built format id (the TFLite writers included) before it looks at the data', () => {
    let err = '';
    try {
      execFileSync(
        process.execPath,
        [
          path.join(REPO_DIR, 'bin/edgetune.mjs'),
          'train',
          '/nonexistent-edgetune-data',
          '--out',
          '/tmp/edgetune-cli-test-out',
          '--export',
          'onnx,tflite,tflite-int8',
        ],
        {
          encoding: 'utf8',
          stdio: 'pipe',
        },
      );
    } catch (e) {
      err = String((e as { stderr?: string }).stderr ?? e);
    }
    expect(err).not.toContain('not built yet');
    expect(err).toContain('nonexistent-edgetune-data');
  });
});
