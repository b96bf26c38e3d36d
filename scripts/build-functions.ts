// npm run build:functions: esbuild bundles of the API adapters, ready for CDK to deploy.
//   dist/functions/lambda/  index.mjs (handler index.handler, Node 20 arm64) + tfjs WASM files
//                           + node_modules/sharp for linux-arm64 (native, installed with npm)
//                           + node_modules/onnxruntime-node with only its linux-arm64 binary (EDGETUNE_ENGINE=ort)
//                           + browser/ (tf.min.js, tf-backend-wasm.min.js: the page's in-browser mode)
//   dist/functions/edge/    index.mjs (Lambda@Edge) + tfjs WASM files + wasm-vips (no native code)
// Prints each bundle's size, unzipped and zipped; fails when the Lambda bundle is >= 50 MiB zipped.
import { execFileSync } from 'node:child_process';
import { copyFileSync, cpSync, existsSync, mkdirSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { build, type Plugin } from 'esbuild';

const require = createRequire(import.meta.url);
const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const argv = process.argv.slice(2);
const outArg = argv.indexOf('--out');
// --out <dir>: build elsewhere (tests); --lambda / --edge: only that bundle; --no-sharp-install: skip npm.
const OUT = outArg >= 0 ? path.resolve(argv[outArg + 1]) : path.join(ROOT, 'dist/functions');
const MIB = 1024 * 1024;
const LAMBDA_ZIP_LIMIT = 50 * MIB;

const args = new Set(argv);
// --node: also a plain Node server bundle (bench:serve runs it; sharp resolves from the repo's node_modules).
const only = ['lambda', 'edge', 'node'].filter((t) => args.has(`--${t}`));
const targets = only.length ? only : ['lambda', 'edge'];
const skipSharpInstall = args.has('--no-sharp-install');

// ESM output still meets CommonJS dependencies (tfjs, AWS SDK) that call require/__dirname.
const banner = [
  "import { createRequire as __cr } from 'node:module';",
  "import { fileURLToPath as __fu } from 'node:url';",
  "import { dirname as __dn } from 'node:path';",
  'const require = __cr(import.meta.url);',
  'const __filename = __fu(import.meta.url);',
  'const __dirname = __dn(__filename);',
].join('\n');

/** The edge bundle must not reach sharp (native): fail the build if anything imports it. */
const forbidSharp: Plugin = {
  name: 'forbid-sharp',
  setup(b) {
    b.onResolve({ filter: /^sharp$/ }, (a) => ({
      errors: [{ text: `sharp is native and cannot run at the edge (imported by ${a.importer})` }],
    }));
  },
};

/**
 * Modules a deployed server never runs, replaced to cut bundle size and cold-start parse time:
 * the WebGL backend, tf.data and the graph-model converter (the @tensorflow/tfjs umbrella in core/tf.ts imports them; only the
 * version exports it reads are kept), node-fetch (tfjs' HTTP fallback; Node 20 has fetch), and
 * s3rver (the embedded S3 of the CLI, reached through core/s3/client.ts).
 */
const STUBS: Record<string, string> = {
  '@tensorflow/tfjs-backend-webgl': "export const version_webgl = 'not bundled';",
  '@tensorflow/tfjs-data': "export const version_data = 'not bundled';",
  // Graph models (tf.loadGraphModel) are never loaded by a server: only layers models.
  '@tensorflow/tfjs-converter': "export const version_converter = 'not bundled';",
  // Lazy: reading globalThis.fetch at load would evaluate Node's undici (~80 ms) during init.
  'node-fetch': 'module.exports = (...args) => globalThis.fetch(...args);',
  s3rver: "module.exports = class { constructor() { throw new Error('the embedded S3 (s3rver) is not part of the deployed bundle'); } };",
};
/** The edge bundle stays on tfjs WASM: onnxruntime-node (native) is replaced by a module that fails to load. */
const noOnnxRuntime: Plugin = {
  name: 'no-onnxruntime',
  setup(b) {
    b.onResolve({ filter: /^onnxruntime-node$/ }, (a) => ({ path: a.path, namespace: 'no-ort' }));
    b.onLoad({ filter: /.*/, namespace: 'no-ort' }, () => ({
      contents: "throw new Error('onnxruntime-node is not part of the edge bundle (Lambda@Edge serves on tfjs WASM)');",
      loader: 'js',
    }));
  },
};

const serverStubs: Plugin = {
  name: 'server-stubs',
  setup(b) {
    b.onResolve({ filter: /^(@tensorflow\/tfjs-(backend-webgl|data|converter)|node-fetch|s3rver)$/ }, (a) => ({
      path: a.path,
      namespace: 'stub',
    }));
    b.onLoad({ filter: /.*/, namespace: 'stub' }, (a) => ({ contents: STUBS[a.path], loader: 'js' }));
  },
};

function copyWasm(dir: string): void {
  const src = path.dirname(require.resolve('@tensorflow/tfjs-backend-wasm/dist/tfjs-backend-wasm-simd.wasm'));
  // The threaded build is not shipped: tfjs turns WASM threads off under Node.
  for (const f of ['tfjs-backend-wasm-simd.wasm', 'tfjs-backend-wasm.wasm']) copyFileSync(path.join(src, f), path.join(dir, f));
}

function dirBytes(dir: string): number {
  let n = 0;
  for (const e of readdirSync(dir, { withFileTypes: true })) {
    const p = path.join(dir, e.name);
    n += e.isDirectory() ? dirBytes(p) : statSync(p).size;
  }
  return n;
}

function zipBytes(dir: string): number {
  const zip = `${dir}.zip`;
  rmSync(zip, { force: true });
  execFileSync('zip', ['-qr9', zip, '.'], { cwd: dir });
  return statSync(zip).size;
}

async function bundle(name: string, entry: string, opts: { external: string[]; plugins?: Plugin[] }): Promise<string> {
  const dir = path.join(OUT, name);
  rmSync(dir, { recursive: true, force: true });
  mkdirSync(dir, { recursive: true });
  await build({
    entryPoints: { index: path.join(ROOT, entry) },
    outdir: dir,
    // Code behind dynamic imports (tfjs, when serving.onnx serves) goes into chunks beside
    // index.mjs that are parsed only when imported; beside it, because modules find their files
    // (onnx.proto, the .wasm files) next to import.meta.url.
    splitting: true,
    chunkNames: 'chunk-[hash]',
    outExtension: { '.js': '.mjs' },
    bundle: true,
    platform: 'node',
    target: 'node20',
    format: 'esm',
    minify: true,
    sourcemap: false,
    legalComments: 'none',
    banner: { js: banner },
    external: opts.external,
    plugins: [serverStubs, ...(opts.plugins ?? [])],
    logLevel: 'warning',
  });
  copyWasm(dir);
  copyDocs(dir);
  // core/export/onnx.ts reads the ONNX schema beside the running module: serving on onnxruntime
  // converts the model at load with it (without it the bundle silently served on tfjs).
  copyFileSync(path.join(ROOT, 'core/export/onnx.proto'), path.join(dir, 'onnx.proto'));
  return dir;
}

/**
 * The page's in-browser mode loads tfjs from the function (functions/browser-assets.ts reads `browser/`
 * beside index.mjs; the .wasm files are the ones copyWasm ships). Lambda only: a Lambda@Edge
 * origin-request function cannot answer with more than 1 MB and tf.min.js is 1.4 MB, so the edge
 * bundle leaves them out and the page hides its toggle there.
 */
function copyBrowserAssets(dir: string): void {
  mkdirSync(path.join(dir, 'browser'), { recursive: true });
  for (const m of ['@tensorflow/tfjs/dist/tf.min.js', '@tensorflow/tfjs-backend-wasm/dist/tf-backend-wasm.min.js']) {
    copyFileSync(require.resolve(m), path.join(dir, 'browser', path.basename(m)));
  }
}

/** /docs is swagger-ui from swagger-ui-dist (functions/page.ts reads it from `swagger-ui/` beside index.mjs). */
function copyDocs(dir: string): void {
  const src = path.dirname(require.resolve('swagger-ui-dist/package.json'));
  mkdirSync(path.join(dir, 'swagger-ui'), { recursive: true });
  for (const f of ['swagger-ui-bundle.js', 'swagger-ui.css', 'LICENSE']) copyFileSync(path.join(src, f), path.join(dir, 'swagger-ui', f));
}

/**
 * onnxruntime-node and onnxruntime-common as packages beside index.mjs, with only the linux-arm64
 * native binary of the package's six platforms (it loads `bin/napi-v6/<platform>/<arch>/` at run time).
 */
function copyOnnxRuntime(dir: string): void {
  const src = path.dirname(require.resolve('onnxruntime-node/package.json'));
  const dst = path.join(dir, 'node_modules/onnxruntime-node');
  const bin = path.join(src, 'bin/napi-v6/linux/arm64');
  if (!existsSync(path.join(bin, 'onnxruntime_binding.node'))) throw new Error(`onnxruntime-node has no linux-arm64 binary at ${bin}`);
  cpSync(path.join(src, 'dist'), path.join(dst, 'dist'), { recursive: true, filter: (f) => !f.endsWith('.map') });
  cpSync(bin, path.join(dst, 'bin/napi-v6/linux/arm64'), { recursive: true });
  const pkg = JSON.parse(readFileSync(path.join(src, 'package.json'), 'utf8'));
  // The install script (CUDA downloads) and its dependencies are not needed at run time.
  writeFileSync(
    path.join(dst, 'package.json'),
    JSON.stringify({ name: pkg.name, version: pkg.version, main: pkg.main, types: pkg.types, license: pkg.license }, null, 2),
  );
  // onnxruntime-common's exports hide its package.json: found beside onnxruntime-node or nested in it.
  const common = [path.join(src, 'node_modules/onnxruntime-common'), path.join(src, '../onnxruntime-common')].find((d) =>
    existsSync(path.join(d, 'package.json')),
  );
  if (!common) throw new Error('onnxruntime-common (a dependency of onnxruntime-node) is not installed');
  cpSync(common, path.join(dir, 'node_modules/onnxruntime-common'), {
    recursive: true,
    filter: (f) => !f.endsWith('.map') && !f.includes(`${path.sep}lib${path.sep}`),
  });
}

function sharpVersion(): string {
  return JSON.parse(readFileSync(path.join(ROOT, 'node_modules/sharp/package.json'), 'utf8')).version;
}

async function buildLambda(): Promise<string> {
  const dir = await bundle('lambda', 'functions/lambda.ts', { external: ['sharp', 'onnxruntime-node'] });
  copyBrowserAssets(dir);
  writeFileSync(path.join(dir, 'package.json'), JSON.stringify({ name: 'edgetune-lambda', private: true, type: 'module' }, null, 2));
  if (!skipSharpInstall) {
    // Same sharp version as development, with the linux-arm64 prebuilt libvips (Graviton Lambda).
    execFileSync(
      'npm',
      [
        'install',
        '--no-audit',
        '--no-fund',
        '--no-save',
        '--os=linux',
        '--cpu=arm64',
        '--libc=glibc',
        `sharp@${sharpVersion()}`,
        '--prefix',
        dir,
      ],
      { stdio: ['ignore', 'ignore', 'inherit'] },
    );
    if (!existsSync(path.join(dir, 'node_modules/@img/sharp-linux-arm64'))) {
      throw new Error('sharp for linux-arm64 did not install into the Lambda bundle');
    }
    for (const f of ['package-lock.json']) rmSync(path.join(dir, f), { force: true });
  }
  // After npm, which removes packages it did not install from the prefix.
  copyOnnxRuntime(dir);
  return dir;
}

async function buildEdge(): Promise<string> {
  const dir = await bundle('edge', 'functions/edge.ts', { external: ['wasm-vips'], plugins: [forbidSharp, noOnnxRuntime] });
  writeFileSync(path.join(dir, 'package.json'), JSON.stringify({ name: 'edgetune-edge', private: true, type: 'module' }, null, 2));
  // wasm-vips starts its pthread workers from its own module file, so it ships as a package, not inlined.
  const vipsSrc = path.join(ROOT, 'node_modules/wasm-vips');
  const vipsDst = path.join(dir, 'node_modules/wasm-vips');
  mkdirSync(path.join(vipsDst, 'lib'), { recursive: true });
  const pkg = JSON.parse(readFileSync(path.join(vipsSrc, 'package.json'), 'utf8'));
  writeFileSync(
    path.join(vipsDst, 'package.json'),
    JSON.stringify(
      { name: 'wasm-vips', version: pkg.version, type: 'module', exports: { '.': { import: './lib/vips-node.mjs' } } },
      null,
      2,
    ),
  );
  for (const f of ['vips-node.mjs', 'vips.wasm']) copyFileSync(path.join(vipsSrc, 'lib', f), path.join(vipsDst, 'lib', f));
  copyFileSync(path.join(vipsSrc, 'LICENSE'), path.join(vipsDst, 'LICENSE'));
  return dir;
}

const rows: Array<{ bundle: string; dir: string; bytes: number; zipped: number }> = [];
for (const t of targets) {
  const dir =
    t === 'lambda'
      ? await buildLambda()
      : t === 'edge'
        ? await buildEdge()
        : await bundle('node', 'functions/node.ts', { external: ['sharp', 'onnxruntime-node'] });
  rows.push({ bundle: t, dir: path.relative(process.cwd(), dir), bytes: dirBytes(dir), zipped: zipBytes(dir) });
}
const mib = (n: number) => `${(n / MIB).toFixed(2)} MiB`;
for (const r of rows)
  process.stdout.write(
    `${r.bundle.padEnd(7)} ${r.dir.padEnd(24)} ${mib(r.bytes).padStart(11)} unzipped  ${mib(r.zipped).padStart(11)} zipped\n`,
  );
const lambda = rows.find((r) => r.bundle === 'lambda');
if (lambda && lambda.zipped >= LAMBDA_ZIP_LIMIT) {
  process.stderr.write(`the Lambda bundle is ${mib(lambda.zipped)} zipped, over the ${mib(LAMBDA_ZIP_LIMIT)} limit\n`);
  process.exitCode = 1;
}
