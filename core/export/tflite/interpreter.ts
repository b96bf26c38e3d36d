// Runs .tflite files in TensorFlow Lite itself: the TFLite interpreter (with its XNNPACK kernels)
// compiled to WebAssembly, as shipped in @tensorflow/tfjs-tflite's `wasm/` folder. That build only
// runs in a browser, so it runs in headless Chromium driven by playwright-core, with the interpreter's
// own standalone client (no tfjs in the page). Everything is served from this process through
// request interception on a made-up origin: no network, no server socket.
import { existsSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { createRequire } from 'node:module';
import path from 'node:path';
import { edgetuneConfig } from '../../config.js';

export interface TfliteRunResult {
  /** One output row per input (the model's first output, as float32). */
  outputs: Float32Array[];
  /** Mean wall time of one `infer()` in the page, ms. */
  inferMs: number;
  /** Input tensor as the interpreter reports it. */
  input: { dataType: string; shape: string };
}

export interface TfliteRuntime {
  readonly name: string;
  /** Runs `bytes` on each input (raw values in the input tensor's dtype: uint8 pixels or float32 0..255). */
  run(bytes: Uint8Array, inputs: readonly (Uint8Array | Float32Array)[]): Promise<TfliteRunResult>;
  close(): Promise<void>;
}

export type TfliteRuntimeStatus = { ok: true; runtime: TfliteRuntime } | { ok: false; reason: string };

const ORIGIN = 'http://tflite.invalid';
export const CHROMIUM_FLAGS = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
];

function chromiumPath(): string | undefined {
  const candidates = [edgetuneConfig().EDGETUNE_CHROMIUM, '/usr/bin/chromium', '/usr/bin/chromium-browser'].filter((p): p is string => !!p);
  return candidates.find((p) => existsSync(p));
}

function tfliteWasmDir(): string | undefined {
  try {
    const req = createRequire(import.meta.url);
    const dir = path.join(path.dirname(req.resolve('@tensorflow/tfjs-tflite/package.json')), 'wasm');
    return existsSync(path.join(dir, 'tflite_web_api_client.js')) ? dir : undefined;
  } catch {
    return undefined;
  }
}

const PAGE = `<!doctype html><meta charset="utf-8"><title>tflite</title><script src="${ORIGIN}/wasm/tflite_web_api_client.js"></script>`;

/**
 * Opens the TFLite runtime, or says plainly why it is not available here (no Chromium, no
 * playwright-core or @tensorflow/tfjs-tflite, e.g. in the GPU training image).
 */
export async function openTfliteRuntime(): Promise<TfliteRuntimeStatus> {
  const exe = chromiumPath();
  if (!exe) return { ok: false, reason: 'no Chromium found (/usr/bin/chromium; apt-get install chromium, or set EDGETUNE_CHROMIUM)' };
  const wasmDir = tfliteWasmDir();
  if (!wasmDir) return { ok: false, reason: '@tensorflow/tfjs-tflite is not installed (a devDependency: npm ci without --omit=dev)' };
  let chromium: typeof import('playwright-core').chromium;
  try {
    ({ chromium } = await import('playwright-core'));
  } catch {
    return { ok: false, reason: 'playwright-core is not installed (a devDependency: npm ci without --omit=dev)' };
  }
  let browser: import('playwright-core').Browser;
  try {
    browser = await chromium.launch({ executablePath: exe, headless: true, args: CHROMIUM_FLAGS });
  } catch (e) {
    return { ok: false, reason: `Chromium (${exe}) did not start: ${(e as Error).message.split('\n')[0]}` };
  }
  const files = new Map<string, Buffer | Uint8Array>();

  // One page with the interpreter's client loaded, reused by every run (each run creates and frees its own runner).
  let pagePromise: Promise<import('playwright-core').Page> | undefined;
  const openPage = async () => {
    const context = await browser.newContext();
    // Only the made-up origin is served; anything else (there should be nothing) is refused.
    await context.route(/^(?!http:\/\/tflite\.invalid\/)/, (route) => route.abort());
    await context.route(`${ORIGIN}/**`, async (route) => {
      const url = new URL(route.request().url());
      if (url.pathname === '/') return route.fulfill({ status: 200, contentType: 'text/html', body: PAGE });
      const mem = files.get(url.pathname);
      if (mem) return route.fulfill({ status: 200, contentType: 'application/octet-stream', body: Buffer.from(mem) });
      const name = url.pathname.startsWith('/wasm/') ? path.basename(url.pathname) : '';
      const file = name ? path.join(wasmDir, name) : '';
      if (!file || !existsSync(file)) return route.fulfill({ status: 404, body: 'not found' });
      const type = name.endsWith('.wasm') ? 'application/wasm' : 'text/javascript';
      return route.fulfill({ status: 200, contentType: type, body: await readFile(file) });
    });
    const page = await context.newPage();
    await page.goto(`${ORIGIN}/`);
    return page;
  };
  // Runs one at a time: they share the page's file slots.
  let queue: Promise<unknown> = Promise.resolve();

  const runNow = async (bytes: Uint8Array, inputs: readonly (Uint8Array | Float32Array)[]): Promise<TfliteRunResult> => {
    if (inputs.length === 0) throw new Error('tflite runtime: no inputs');
    pagePromise ??= openPage();
    const page = await pagePromise;
    const n = inputs[0].byteLength;
    if (inputs.some((x) => x.byteLength !== n)) throw new Error('tflite runtime: inputs of different sizes');
    files.set('/model.tflite', bytes);
    try {
      const input = await page.evaluate(async (origin) => {
        // biome-ignore lint/suspicious/noExplicitAny: the interpreter's client is a global without types in the page.
        const g = globalThis as any;
        g.tfweb.tflite_web_api.setWasmPath(`${origin}/wasm/`);
        const model = await (await fetch(`${origin}/model.tflite`)).arrayBuffer();
        g.runner = await g.tfweb.TFLiteWebModelRunner.create(model, { numThreads: 1 });
        const info = g.runner.getInputs()[0];
        return { dataType: info.dataType as string, shape: String(info.shape), bytes: info.data().byteLength as number };
      }, ORIGIN);
      if (input.bytes !== n) throw new Error(`tflite runtime: the model's input takes ${input.bytes} bytes, given ${n}`);
      // Inputs go over in chunks of ~8 MB (one request each): a whole validation set at once can exhaust the page.
      const perChunk = Math.max(1, Math.floor((8 << 20) / n));
      const outputs: Float32Array[] = [];
      let ms = 0;
      for (let s = 0; s < inputs.length; s += perChunk) {
        const part = inputs.slice(s, s + perChunk);
        const all = new Uint8Array(n * part.length);
        for (const [i, x] of part.entries()) all.set(new Uint8Array(x.buffer, x.byteOffset, x.byteLength), i * n);
        files.set('/inputs.bin', all);
        const r = await page.evaluate(
          async ({ origin, count }) => {
            // biome-ignore lint/suspicious/noExplicitAny: as above.
            const runner = (globalThis as any).runner;
            const data = new Uint8Array(await (await fetch(`${origin}/inputs.bin`)).arrayBuffer());
            const inView = runner.getInputs()[0].data();
            const per = data.length / count;
            const rows: number[][] = [];
            let t = 0;
            for (let i = 0; i < count; i++) {
              new Uint8Array(inView.buffer, inView.byteOffset, inView.byteLength).set(data.subarray(i * per, (i + 1) * per));
              const t0 = performance.now();
              if (!runner.infer()) throw new Error('infer() failed');
              t += performance.now() - t0;
              rows.push(Array.from(runner.getOutputs()[0].data() as Float32Array));
            }
            return { rows, t };
          },
          { origin: ORIGIN, count: part.length },
        );
        outputs.push(...r.rows.map((o) => Float32Array.from(o)));
        ms += r.t;
      }
      return { outputs, inferMs: ms / inputs.length, input: { dataType: input.dataType, shape: input.shape } };
    } finally {
      files.delete('/model.tflite');
      files.delete('/inputs.bin');
      await page
        .evaluate(() => {
          // biome-ignore lint/suspicious/noExplicitAny: as above.
          const g = globalThis as any;
          g.runner?.cleanUp();
          g.runner = undefined;
        })
        .catch(() => undefined);
    }
  };
  const run = (bytes: Uint8Array, inputs: readonly (Uint8Array | Float32Array)[]): Promise<TfliteRunResult> => {
    const next = queue.then(() => runNow(bytes, inputs));
    queue = next.catch(() => undefined);
    return next;
  };

  return {
    ok: true,
    runtime: {
      name: `TensorFlow Lite (WASM, @tensorflow/tfjs-tflite ${tfliteVersion()}) in Chromium ${browser.version()}`,
      run,
      close: () => browser.close(),
    },
  };
}

function tfliteVersion(): string {
  try {
    const req = createRequire(import.meta.url);
    return (req('@tensorflow/tfjs-tflite/package.json') as { version: string }).version;
  } catch {
    return '?';
  }
}
