// A child node process (TypeScript through tsx) whose resolve hook (record-resolved.mjs) writes
// every module URL that ESM resolves to `resolvedFile`: for tests of what a start-up path loads.
import { execFile } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { promisify } from 'node:util';
import { REPO_DIR } from './shared.js';

const run = promisify(execFile);

/** Runs `node --import tsx <recorder> ...args`; returns its last stdout line as JSON and the URLs resolved. */
export async function runRecordingResolved<T>(
  args: string[],
  resolvedFile: string,
  env: NodeJS.ProcessEnv = {},
): Promise<{ out: T; urls: string[] }> {
  const { stdout } = await run(
    process.execPath,
    ['--import', 'tsx', '--import', path.join(REPO_DIR, 'test/helpers/record-resolved.mjs'), ...args],
    { cwd: REPO_DIR, env: { ...process.env, ...env, EDGETUNE_TEST_RESOLVED: resolvedFile }, timeout: 90_000 },
  );
  const out = JSON.parse(stdout.trim().split('\n').at(-1) as string) as T;
  const urls = (await readFile(resolvedFile, 'utf8')).split('\n').filter(Boolean);
  return { out, urls };
}
