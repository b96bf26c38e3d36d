// Plain-JS entry of the pool's worker threads: registers tsx's loader in this thread, so the
// TypeScript worker loads whether the parent runs under `npx tsx`, bin/edgetune.mjs, or vitest.
import { register } from 'tsx/esm/api';

register();
await import('./worker-boundary.ts');
