import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { initBackend } from '../core/backend.js';
import { ExportsSchema } from '../core/export/exports-file.js';
import { exportModelFormats } from '../training/export-formats.js';
import { makeModelDir } from './helpers/model-dir.js';

let tmp: string;
beforeAll(async () => {
  await initBackend();
  tmp = await mkdtemp(path.join(os.tmpdir(), 'edgetune-export-report-'));
});
afterAll(async () => {
  await rm(tmp, { recursive: true, force: true });
});

describe('the report formats table', () => {
  it('edgetune export rewrites report/index.html with each format: size, accuracy, max |dp|, agreement, latency', async () => {
    const dir = await makeModelDir(path.join(tmp, 'model'), { inputSize: 32 });
    await mkdir(path.join(dir, 'report'), { recursive: true });
    await writeFile(path.join(dir, 'report', 'confusion.svg'), '<svg/>');
    await writeFile(path.join(dir, 'report', 'index.html'), 'old page');
    const { exports } = await exportModelFormats(dir, ['onnx'], {});
    const rec = ExportsSchema.parse(exports).exports[0];
    expect(rec.latencyMs).toBeGreaterThan(0);
    const html = await readFile(path.join(dir, 'report', 'index.html'), 'utf8');
    expect(html).toContain('<h2>Export formats</h2>');
    const row = html.slice(html.indexOf('<code>onnx</code>'));
    expect(row).toContain('<code>model.onnx</code>');
    expect(row).toContain(`${(rec.bytes / 1e6).toFixed(2)} MB`);
    expect(row).toContain(rec.verification.maxAbsDiff.toExponential(1));
    expect(row).toContain(`${rec.latencyMs!.toFixed(1)} ms`);
    expect(row).toContain(`${(100 * rec.verification.accuracy!).toFixed(1)}%`);
    expect(html).toContain('src="confusion.svg"');
  });
});
