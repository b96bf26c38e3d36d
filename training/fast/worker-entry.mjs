// Plain-JS entry of the worker threads (boundary pool, parallel tail): registers tsx's loader in
// this thread, so the TypeScript worker loads whether the parent runs under `npx tsx`,
// bin/edgetune.mjs, or vitest. `workerData.entry` picks the worker module (default: boundary).
import { workerData } from 'node:worker_threads';
import { register } from 'tsx/esm/api';

const entries = { boundary: './worker-boundary.ts', tail: './worker-tail.ts' };
const entry = entries[workerData?.entry ?? 'boundary'];
if (!entry) throw new Error(`unknown worker entry ${workerData?.entry}`);
register();
await import(entry);
