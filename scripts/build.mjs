// Compiles the runtime TypeScript (cli, core, store, training, functions, trigger) to dist/ with esbuild,
// file by file (no bundling: the sources' `.js` import specifiers resolve as they are), so the CLI
// and its worker threads run plain JavaScript instead of starting through tsx's loader.
// `node scripts/build.mjs` builds; bin/edgetune.mjs also builds on demand when the sources changed.
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readdirSync, readFileSync, renameSync, rmSync, statSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

export const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
/** Builds live in dist/<stamp>/, one per state of the sources: a rebuild never replaces files under a running process. */
export const DIST_ROOT = path.join(ROOT, 'dist');
const SOURCE_DIRS = ['cli', 'core', 'store', 'training', 'functions', 'trigger'];
const KEEP_BUILDS = 3;
/** Files other than TypeScript that modules read beside themselves at run time, copied as they are. */
const ASSETS = ['.mjs', '.proto', '.py'];

function sources() {
  const out = [];
  const walk = (dir) => {
    for (const e of readdirSync(dir, { withFileTypes: true })) {
      const p = path.join(dir, e.name);
      if (e.isDirectory()) walk(p);
      else if ((e.name.endsWith('.ts') && !e.name.endsWith('.d.ts')) || ASSETS.some((x) => e.name.endsWith(x))) out.push(p);
    }
  };
  for (const d of SOURCE_DIRS) if (existsSync(path.join(ROOT, d))) walk(path.join(ROOT, d));
  return out.sort();
}

/** Names the state of the sources (paths and modification times; a few ms to compute). */
function sourceStamp(files = sources()) {
  const h = createHash('sha256');
  for (const f of files) h.update(`${path.relative(ROOT, f)}\0${statSync(f).mtimeMs}\n`);
  return h.digest('hex').slice(0, 16);
}

const isBuild = (dir) => existsSync(path.join(dir, 'cli/main.js'));

/** The build of the current sources, if there is one. */
export function freshBuild() {
  const dir = path.join(DIST_ROOT, sourceStamp());
  return isBuild(dir) ? dir : undefined;
}

/** The newest build of any sources (e.g. in an image that has dist/ but not the build tools). */
export function newestBuild() {
  if (!existsSync(DIST_ROOT)) return undefined;
  const builds = readdirSync(DIST_ROOT)
    .map((n) => path.join(DIST_ROOT, n))
    .filter(isBuild)
    .sort((a, b) => statSync(b).mtimeMs - statSync(a).mtimeMs);
  return builds[0];
}

/** Builds dist/<stamp>/ and returns it; undefined when esbuild is not installed (production installs omit it). */
export async function buildDist() {
  let esbuild;
  try {
    esbuild = await import('esbuild');
  } catch {
    return undefined;
  }
  const files = sources();
  const dir = path.join(DIST_ROOT, sourceStamp(files));
  const tmp = `${dir}.tmp-${process.pid}`;
  await esbuild.build({
    entryPoints: files.filter((f) => f.endsWith('.ts')),
    outdir: tmp,
    outbase: ROOT,
    format: 'esm',
    platform: 'node',
    target: 'node20',
    sourcemap: 'linked',
    logLevel: 'warning',
    // core/tf.ts, core/sharp.ts and core/s3/sdk.ts call `require` where a bundle has one, else
    // createRequire: in this file-by-file ESM build the first branch never runs.
    logOverride: { 'unsupported-require-call': 'silent' },
  });
  for (const f of files.filter((x) => !x.endsWith('.ts'))) {
    const to = path.join(tmp, path.relative(ROOT, f));
    mkdirSync(path.dirname(to), { recursive: true });
    writeFileSync(to, readFileSync(f));
  }
  // core/export reads the package version from ../../package.json.
  writeFileSync(path.join(tmp, 'package.json'), readFileSync(path.join(ROOT, 'package.json')));
  // Modules that find bin/edgetune.mjs relative to themselves (cli/local-system.ts) look one
  // level up from <build>/cli: a forwarder keeps that path working.
  mkdirSync(path.join(tmp, 'bin'), { recursive: true });
  writeFileSync(path.join(tmp, 'bin/edgetune.mjs'), "#!/usr/bin/env node\nimport '../../../bin/edgetune.mjs';\n");
  try {
    renameSync(tmp, dir);
  } catch (e) {
    // Another process built the same sources first: use its build.
    rmSync(tmp, { recursive: true, force: true });
    if (!isBuild(dir)) throw e;
  }
  // Older builds go, except the newest few (a process started from one may still be running).
  const others = readdirSync(DIST_ROOT)
    .map((n) => path.join(DIST_ROOT, n))
    .filter((d) => d !== dir && !d.includes('.tmp-'))
    .sort((a, b) => statSync(b).mtimeMs - statSync(a).mtimeMs);
  for (const old of others.slice(KEEP_BUILDS - 1)) rmSync(old, { recursive: true, force: true });
  return dir;
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  const t = performance.now();
  const dir = freshBuild() ?? (await buildDist());
  if (!dir) {
    console.error('edgetune build: esbuild is not installed (npm ci installs it; production installs omit it)');
    process.exit(1);
  }
  console.error(`edgetune build: ${path.relative(ROOT, dir)} in ${((performance.now() - t) / 1000).toFixed(2)} s`);
}
