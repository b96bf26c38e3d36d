// npm run bench:serve -- --model <dir> [--engine wasm,ort]
// For each serving engine, in one run: latency (p50/p95/p99) and req/s at concurrency 1 and 8 against
// the bundled Node server, the server's own decode / inference split of a request, cold start
// (process start to the first 200 answer) with the model on the embedded S3 and from a folder, and
// RSS (now and peak) after 2,000 requests. Real alpaca JPEGs from ../shared. Bounded in time.
import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { createRequire } from 'node:module';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { Command, InvalidArgumentError } from 'commander';
import { initBackend } from '../core/backend.js';
import { parseManifest } from '../core/manifest.js';
import { freePort, startS3rver } from '../core/s3/embedded.js';
import { publishModel } from '../store/model-store.js';
import { machineLine } from './machine.js';

console.log(machineLine());

// autocannon ships no types: the small part used here.
interface AutocannonInstance extends PromiseLike<unknown> {
  on(event: 'response', fn: (client: unknown, status: number, bytes: number, ms: number) => void): void;
  stop(): void;
}
const autocannon = createRequire(import.meta.url)('autocannon') as (opts: Record<string, unknown>) => AutocannonInstance;

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const ALPACA = path.resolve(process.env.EDGETUNE_SHARED_DIR ?? path.join(ROOT, '../shared'), 'datasets/alpaca/alpaca');

const posInt = (v: string) => {
  const n = Number(v);
  if (!Number.isInteger(n) || n <= 0) throw new InvalidArgumentError(`expected a positive integer; got '${v}'`);
  return n;
};
const opts = new Command('bench:serve')
  .description('Benchmark the classify API on the Node server (autocannon).')
  .option('--model <dir>', 'a trained model folder (model.json + manifest.json + verification.json)')
  .option('--seconds <n>', 'duration of each latency phase', posInt, 10)
  .option('--requests <n>', 'total requests before reading RSS', posInt, 2000)
  .option('--cold-starts <n>', 'cold starts to time per model location', posInt, 3)
  .option('--max-seconds <n>', 'cap on the top-up phase that reaches --requests', posInt, 120)
  .option('--no-s3', 'skip publishing to the embedded S3 (cold start from the folder only)')
  .option(
    '--engine <names>',
    'serving engines to measure, one after the other: wasm (tfjs), ort (onnxruntime-node) or wasm,ort',
    (v: string) => {
      const names = v.split(',').map((x) => x.trim());
      for (const n of names) if (n !== 'wasm' && n !== 'ort') throw new InvalidArgumentError(`expected wasm, ort or wasm,ort; got '${v}'`);
      return names;
    },
    ['wasm', 'ort'],
  )
  .parse()
  .opts<{ model?: string; seconds: number; requests: number; coldStarts: number; maxSeconds: number; s3: boolean; engine: string[] }>();

if (!opts.model || !existsSync(path.join(opts.model, 'model.json'))) {
  process.stderr.write(
    `bench:serve needs a trained model folder${opts.model ? ` (no model.json in ${opts.model})` : ''}. Train one first, e.g.\n` +
      '  npx edgetune train ../shared/datasets/alpaca --out models/alpaca\n' +
      'then run\n  npm run bench:serve -- --model models/alpaca\n',
  );
  process.exit(2);
}
const modelDir = path.resolve(opts.model);
const manifest = parseManifest(JSON.parse(readFileSync(path.join(modelDir, 'manifest.json'), 'utf8')));

function photos(): { bodies: Uint8Array<ArrayBuffer>[]; source: string } {
  if (existsSync(ALPACA)) {
    const files = readdirSync(ALPACA)
      .filter((f) => /\.jpe?g$/i.test(f))
      .sort()
      .slice(0, 32);
    return {
      bodies: files.map((f) => new Uint8Array(readFileSync(path.join(ALPACA, f)))),
      source: `${files.length} alpaca JPEGs from ${ALPACA}`,
    };
  }
  throw new Error(`no photos: ${ALPACA} not found (the shared dataset beside the repository)`);
}

const log = (line: string) => process.stderr.write(`${line}\n`);
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

function buildNodeBundle(out: string): string {
  execFileSync('npx', ['tsx', path.join(ROOT, 'scripts/build-functions.ts'), '--node', '--out', out, '--no-sharp-install'], {
    cwd: ROOT,
    stdio: ['ignore', 'ignore', 'inherit'],
  });
  return path.join(out, 'node/index.mjs');
}

interface Server {
  child: ChildProcess;
  url: string;
  coldStartMs: number;
  /** From the server's own 'model loaded' log line. */
  loadMs?: number;
  warmupMs?: number;
  listenMs?: number;
  /** From the 'model loaded' line: what serves (e.g. onnxruntime-node ... converted at load). */
  runtime?: string;
  /** onnxruntime only: the set-up steps' times. */
  setupMs?: Record<string, number>;
  stop(): Promise<void>;
}

/** Starts the bundled server and times process start -> first 200 from POST /v1/classify. */
async function startServer(entry: string, engine: string, env: Record<string, string>, body: Uint8Array<ArrayBuffer>): Promise<Server> {
  const port = await freePort();
  const url = `http://127.0.0.1:${port}`;
  const t0 = performance.now();
  const child = spawn(process.execPath, [entry], {
    env: { ...process.env, ...env, EDGETUNE_ENGINE: engine, PORT: String(port), LOG_LEVEL: 'info' },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stderr = '';
  let stdout = '';
  let listenMs: number | undefined;
  child.stdout?.on('data', (d) => {
    if (stdout.length < 1_000_000) stdout += d;
  });
  child.stderr?.on('data', (d) => {
    stderr += d;
  });
  const deadline = t0 + 60_000;
  for (;;) {
    if (child.exitCode !== null) throw new Error(`server exited (${child.exitCode}): ${stderr}`);
    if (listenMs === undefined && /listening on/.test(stderr)) listenMs = performance.now() - t0;
    if (performance.now() > deadline) {
      child.kill();
      throw new Error(`server gave no 200 within 60 s: ${stderr}`);
    }
    try {
      const res = await fetch(`${url}/v1/classify`, { method: 'POST', body, headers: { 'content-type': 'image/jpeg' } });
      await res.arrayBuffer();
      if (res.status === 200) break;
    } catch {
      // not listening yet
    }
    await sleep(10);
  }
  const coldStartMs = performance.now() - t0;
  const loaded = stdout
    .split('\n')
    .map((l) => {
      try {
        return JSON.parse(l);
      } catch {
        return undefined;
      }
    })
    .find((e) => e?.msg === 'model loaded');
  if (engine === 'ort' && !/^onnxruntime/.test(loaded?.runtime ?? '')) {
    const why = stdout.split('\n').find((l) => /"level":"warn"/.test(l));
    log(`WARNING: engine ort asked for, but the server runs on ${loaded?.runtime ?? '?'}: ${why ?? '(no warning logged)'}`);
  }
  child.stdout?.removeAllListeners('data');
  child.stdout?.resume();
  return {
    child,
    url,
    coldStartMs,
    listenMs,
    loadMs: loaded?.loadMs,
    warmupMs: loaded?.warmupMs,
    runtime: loaded?.runtime,
    setupMs: loaded?.setupMs,
    stop: async () => {
      child.kill('SIGTERM');
      await new Promise((r) => child.once('exit', r));
    },
  };
}

/** VmRSS (now) or VmHWM (peak) of a process, MiB. */
function rssMiB(pid: number, field: 'VmRSS' | 'VmHWM' = 'VmRSS'): number {
  const m = readFileSync(`/proc/${pid}/status`, 'utf8').match(new RegExp(`${field}:\\s+(\\d+) kB`));
  return m ? Number(m[1]) / 1024 : Number.NaN;
}

interface Split {
  n: number;
  decode: number;
  inference: number;
  total: number;
}

/** p50 of the server's own timings (response `timings`) over sequential requests: where a request's time goes. */
async function split(url: string, bodies: Uint8Array<ArrayBuffer>[], n: number): Promise<Split> {
  const d: number[] = [];
  const inf: number[] = [];
  const tot: number[] = [];
  for (let i = 0; i < n; i++) {
    const res = await fetch(`${url}/v1/classify`, {
      method: 'POST',
      body: bodies[i % bodies.length],
      headers: { 'content-type': 'image/jpeg' },
    });
    const t = ((await res.json()) as { timings: { decodeMs: number; inferenceMs: number; totalMs: number } }).timings;
    d.push(t.decodeMs);
    inf.push(t.inferenceMs);
    tot.push(t.totalMs);
  }
  const p50 = (xs: number[]) =>
    percentile(
      [...xs].sort((a, b) => a - b),
      50,
    );
  return { n, decode: p50(d), inference: p50(inf), total: p50(tot) };
}

function percentile(sorted: number[], p: number): number {
  if (sorted.length === 0) return Number.NaN;
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))];
}

interface Phase {
  name: string;
  connections: number;
  requests: number;
  non200: number;
  rps: number;
  p50: number;
  p95: number;
  p99: number;
}

/** One autocannon run; per-request latencies are recorded here so p95 is exact. */
async function load(
  url: string,
  bodies: Uint8Array[],
  name: string,
  connections: number,
  limit: { seconds?: number; amount?: number; capSeconds?: number },
): Promise<Phase> {
  let next = 0;
  const times: number[] = [];
  let non200 = 0;
  const t0 = performance.now();
  const instance = autocannon({
    url: `${url}/v1/classify`,
    connections,
    pipelining: 1,
    ...(limit.amount ? { amount: limit.amount } : { duration: limit.seconds }),
    timeout: 30,
    requests: [
      {
        method: 'POST',
        setupRequest: (req: Record<string, unknown>) => ({
          ...req,
          headers: { 'content-type': 'image/jpeg' },
          body: Buffer.from(bodies[next++ % bodies.length]),
        }),
      },
    ],
  });
  const cap = limit.capSeconds ? setTimeout(() => instance.stop(), limit.capSeconds * 1000) : undefined;
  instance.on('response', (_client: unknown, status: number, _bytes: number, ms: number) => {
    times.push(ms);
    if (status !== 200) non200++;
  });
  await instance;
  clearTimeout(cap);
  const seconds = (performance.now() - t0) / 1000;
  times.sort((a, b) => a - b);
  return {
    name,
    connections,
    requests: times.length,
    non200,
    rps: times.length / seconds,
    p50: percentile(times, 50),
    p95: percentile(times, 95),
    p99: percentile(times, 99),
  };
}

const work = await mkdtemp(path.join(os.tmpdir(), 'edgetune-bench-'));
const bundleOut = path.join(ROOT, 'dist/bench');
const cleanups: Array<() => Promise<void>> = [];
try {
  const { bodies, source } = photos();
  const first = bodies[0];
  log(
    `model ${manifest.name} ${manifest.version}: mobilenet_v2 alpha ${manifest.backbone.alpha}, ${manifest.input.size}x${manifest.input.size}, ${manifest.classes.length} classes`,
  );
  log(
    `photos: ${source}; load average ${os
      .loadavg()
      .map((x) => x.toFixed(1))
      .join(' ')} on ${os.cpus().length} CPUs (shared machine: figures are indicative)`,
  );
  const entry = buildNodeBundle(bundleOut);

  let s3Env: Record<string, string> | undefined;
  if (opts.s3) {
    await initBackend('auto', () => {});
    const s3 = await startS3rver({ dir: path.join(work, 's3'), buckets: ['edgetune'], silent: true });
    cleanups.push(() => s3.close());
    process.env.EDGETUNE_S3_ENDPOINT = s3.endpoint;
    const published = await publishModel(modelDir, 's3://edgetune/models/bench', { force: true, log: () => {} });
    log(`published to the embedded S3 at ${s3.endpoint}: ${published.uri} (${published.quantization.dtype} weights)`);
    // The server is a child process: it gets the embedded S3's endpoint and key pair explicitly.
    s3Env = {
      MODEL_URI: 's3://edgetune/models/bench',
      EDGETUNE_S3_ENDPOINT: s3.endpoint,
      EDGETUNE_S3_ACCESS_KEY_ID: s3.credentials.accessKeyId,
      EDGETUNE_S3_SECRET_ACCESS_KEY: s3.credentials.secretAccessKey,
    };
  }
  const f = (x: number) => x.toFixed(1).padStart(8);
  const summary: string[] = [];
  for (const engine of opts.engine) {
    log(`engine ${engine}: ${opts.coldStarts} cold starts per model location, then load phases`);
    const colds: Record<string, Server[]> = { folder: [], ...(s3Env ? { 'embedded S3': [] } : {}) };
    for (let i = 0; i < opts.coldStarts; i++) {
      const a = await startServer(entry, engine, { MODEL_URI: modelDir }, first);
      colds.folder.push(a);
      await a.stop();
      if (s3Env) {
        const b = await startServer(entry, engine, s3Env, first);
        colds['embedded S3'].push(b);
        await b.stop();
      }
    }

    const server = await startServer(entry, engine, s3Env ?? { MODEL_URI: modelDir }, first);
    const phases: Phase[] = [];
    let breakdown: Split;
    let total: number;
    let rss: number;
    let peak: number;
    try {
      phases.push(await load(server.url, bodies, 'warm-up', 1, { amount: 20 }));
      breakdown = await split(server.url, bodies, 64);
      phases.push(await load(server.url, bodies, 'concurrency 1', 1, { seconds: opts.seconds }));
      phases.push(await load(server.url, bodies, 'concurrency 8', 8, { seconds: opts.seconds }));
      const sent = 1 + breakdown.n + phases.reduce((n, p) => n + p.requests, 0);
      if (sent < opts.requests) {
        phases.push(await load(server.url, bodies, 'top-up', 8, { amount: opts.requests - sent, capSeconds: opts.maxSeconds }));
      }
      total = 1 + breakdown.n + phases.reduce((n, p) => n + p.requests, 0);
      rss = rssMiB(server.child.pid!);
      peak = rssMiB(server.child.pid!, 'VmHWM');
    } finally {
      await server.stop();
    }

    process.stdout.write(
      `\nclassify API on Node (${entry.replace(ROOT + '/', '')}), engine ${engine}: ${server.runtime ?? '?'}; ${manifest.input.size}px alpha ${manifest.backbone.alpha}\n`,
    );
    process.stdout.write(`phase            conns  requests  non-200     req/s   p50 ms   p95 ms   p99 ms\n`);
    for (const p of phases) {
      process.stdout.write(
        `${p.name.padEnd(16)} ${String(p.connections).padStart(5)} ${String(p.requests).padStart(9)} ${String(p.non200).padStart(8)} ${f(p.rps)}  ${f(p.p50)} ${f(p.p95)} ${f(p.p99)}\n`,
      );
    }
    process.stdout.write(
      `server timings, p50 of ${breakdown.n} sequential requests: decode ${breakdown.decode.toFixed(1)} ms, inference ${breakdown.inference.toFixed(1)} ms, total in the handler ${breakdown.total.toFixed(1)} ms\n`,
    );
    const medians: string[] = [];
    for (const [where, runs] of Object.entries(colds)) {
      const sorted = [...runs].sort((a, b) => a.coldStartMs - b.coldStartMs);
      const med = sorted[Math.floor((sorted.length - 1) / 2)];
      medians.push(`${where} ${med.coldStartMs.toFixed(0)} ms`);
      process.stdout.write(
        `cold start (process start -> first 200), model from ${where}: median ${med.coldStartMs.toFixed(0)} ms ` +
          `(listening at ${med.listenMs?.toFixed(0) ?? '?'} ms, model fetch+build ${med.loadMs ?? '?'} ms, engine setup+warm-up ${med.warmupMs ?? '?'} ms${
            med.setupMs
              ? ` = ${Object.entries(med.setupMs)
                  .map(([k, v]) => `${k} ${v}`)
                  .join(', ')}`
              : ''
          }); ` +
          `runs ${sorted.map((x) => x.coldStartMs.toFixed(0)).join(', ')} ms\n`,
      );
    }
    process.stdout.write(`RSS after ${total} requests: ${rss.toFixed(0)} MiB (peak ${peak.toFixed(0)} MiB)\n`);
    const c1 = phases.find((p) => p.name === 'concurrency 1') as Phase;
    const c8 = phases.find((p) => p.name === 'concurrency 8') as Phase;
    summary.push(
      `${engine.padEnd(6)} ${f(c1.p50)} ${f(c1.p95)} ${f(c1.p99)} ${f(c8.rps)}  ${f(breakdown.decode)} ${f(breakdown.inference)}  ${f(peak)}  cold ${medians.join(', ')}`,
    );
  }
  process.stdout.write(`\nsummary (c1 latency, c8 req/s, server split p50, peak RSS MiB)\n`);
  process.stdout.write(`engine   p50 ms   p95 ms   p99 ms    req/s  decode ms  infer ms  peak RSS\n`);
  for (const line of summary) process.stdout.write(`${line}\n`);
  process.stdout.write(
    `load average now ${os
      .loadavg()
      .map((x) => x.toFixed(1))
      .join(' ')}\n`,
  );
} finally {
  for (const c of cleanups.reverse()) await c().catch(() => {});
  await rm(work, { recursive: true, force: true });
}
process.exit(0);
