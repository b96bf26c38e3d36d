#!/usr/bin/env -S node --max-semi-space-size=32
// Runs the CLI as compiled JavaScript (dist/<stamp>/, scripts/build.mjs), building it first when
// the sources changed and esbuild is installed (so `npm ci && npm start` works on a fresh clone);
// falls back to tsx's loader on the TypeScript sources, then to the newest build there is.
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { buildDist, freshBuild, newestBuild } from '../scripts/build.mjs';

// The AWS SDK warns on every start that its releases after January 2027 need Node 22; the
// locked SDK runs on Node 20, so keep the CLI's output for what matters (README: Requirements).
process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED ??= 'true';

const run = (dir) => import(pathToFileURL(path.join(dir, 'cli/main.js')).href);
const build = freshBuild() ?? (await buildDist());
if (build) {
  await run(build);
} else {
  let tsx;
  try {
    tsx = await import('tsx/esm/api');
  } catch {}
  if (tsx) {
    tsx.register();
    await import('../cli/main.ts');
  } else {
    const newest = newestBuild();
    if (!newest) throw new Error('edgetune: no build in dist/, and neither esbuild nor tsx is installed to run the sources (run npm ci)');
    await run(newest);
  }
}
