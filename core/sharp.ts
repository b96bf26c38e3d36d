// sharp (libvips), required rather than imported: its CommonJS build loads in ~75 ms here, its
// ESM build (what `import` picks) in ~130 ms. One build for the whole process: every module takes
// sharp from here (test/cjs-required.test.ts). Bundles keep sharp external; the banner's `require`
// loads it there.
import { createRequire } from 'node:module';
import type SharpFunction from 'sharp';

const load = typeof require === 'function' ? undefined : createRequire(import.meta.url);
export const sharp = (load ? load('sharp') : require('sharp')) as typeof SharpFunction;
