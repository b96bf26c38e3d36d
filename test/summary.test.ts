import { execFile } from 'node:child_process';
import path from 'node:path';
import { promisify } from 'node:util';
import { beforeAll, describe, expect, it } from 'vitest';
import { formatSummary } from '../cli/commands/summary.js';
import { initBackend } from '../core/backend.js';
import { buildMobileNetV2 } from '../core/mobilenet-v2.js';
import { REPO_DIR } from './helpers/shared.js';

beforeAll(async () => {
  await initBackend('auto', () => {});
});

function totals(text: string): string[] {
  return text.split('\n').filter((l) => /^(Total|Trainable|Non-trainable) params:/.test(l));
}

describe('edgetune summary', () => {
  it.each([
    [
      { alpha: 1.0, inputSize: 224, includeTop: true },
      ['Total params: 3,538,984', 'Trainable params: 3,504,872', 'Non-trainable params: 34,112'],
      157,
    ],
    [
      { alpha: 1.0, inputSize: 160, includeTop: false },
      ['Total params: 2,257,984', 'Trainable params: 2,223,872', 'Non-trainable params: 34,112'],
      155,
    ],
    [
      { alpha: 0.35, inputSize: 224, includeTop: false },
      ['Total params: 410,208', 'Trainable params: 396,128', 'Non-trainable params: 14,080'],
      155,
    ],
  ])('%o ends with Keras totals', (opts, expected, layers) => {
    const model = buildMobileNetV2(opts);
    const text = formatSummary(model);
    model.dispose();
    expect(totals(text)).toEqual(expected);
    const rows = text.split('\n').filter((l) => /^\S+ \(/.test(l) && !l.startsWith('Layer (type)'));
    expect(rows.length).toBe(layers);
    expect(text).toContain('Layer (type)                    Output Shape         Param #     Connected to');
  });

  it('prints Keras rows: shape, params, and every inbound connection', () => {
    const model = buildMobileNetV2({ alpha: 1.0, inputSize: 224, includeTop: true });
    const lines = formatSummary(model).split('\n');
    model.dispose();
    expect(lines).toContain('input_1 (InputLayer)            (None, 224, 224, 3)  0');
    expect(lines).toContain('Conv1 (Conv2D)                  (None, 112, 112, 32) 864         Conv1_pad[0][0]');
    expect(lines).toContain('predictions (Dense)             (None, 1000)         1281000     global_average_pooling2d[0][0]');
    const add = lines.findIndex((l) => l.startsWith('block_2_add (Add)'));
    expect(lines[add]).toMatch(/\(None, 56, 56, 24\)\s+0\s+block_1_project_BN\[0\]\[0\]$/);
    expect(lines[add + 1].trim()).toBe('block_2_project_BN[0][0]');
  });

  it('runs as a CLI command with --alpha/--size/--include-top and rejects a bad alpha', async () => {
    const run = promisify(execFile);
    const bin = path.join(REPO_DIR, 'bin/edgetune.mjs');
    const { stdout } = await run(process.execPath, [bin, 'summary', '--alpha', '0.35', '--size', '160'], { cwd: REPO_DIR });
    expect(totals(stdout)).toEqual(['Total params: 410,208', 'Trainable params: 396,128', 'Non-trainable params: 14,080']);
    const bad = await run(process.execPath, [bin, 'summary', '--alpha', '0.6'], { cwd: REPO_DIR }).catch((e) => e);
    expect(bad.code).not.toBe(0);
    expect(bad.stderr).toMatch(/alpha must be one of 0.35, 0.5, 0.75, 1, 1.3, 1.4; got 0.6/);
  }, 60_000);
});
