// Plain-JS entry of the worker threads (boundary pool, parallel tail). In dist/ (compiled, see
// scripts/build.mjs) the worker modules sit next to this file as .js and load directly; next to
// the TypeScript sources it registers tsx's loader in this thread first, so the worker loads
// whether the parent runs under `npx tsx` or vitest. `workerData.entry` picks the module.
import { existsSync } from 'node:fs';
import { workerData } from 'node:worker_threads';

const names = { boundary: 'worker-boundary', tail: 'worker-tail' };
const name = names[workerData?.entry ?? 'boundary'];
if (!name) throw new Error(`unknown worker entry ${workerData?.entry}`);
const compiled = new URL(`./${name}.js`, import.meta.url);
if (existsSync(compiled)) {
  await import(compiled.href);
} else {
  const { register } = await import('tsx/esm/api');
  register();
  await import(`./${name}.ts`);
}
