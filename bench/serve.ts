// npm run bench:serve -- --model <dir>
// Latency (p50/p95/p99) and req/s at concurrency 1 and 8 against the bundled Node server, cold start
// (process start to the first 200 answer) with the model on the embedded S3 and from a folder, and
// RSS after 2,000 requests. Real alpaca JPEGs from ../shared when present. Bounded in time.
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
    '--engine <name>',
    'serving engine of the server: wasm (tfjs) or ort (onnxruntime-node) [EDGETUNE_ENGINE]',
    (v: string) => {
      if (v !== 'wasm' && v !== 'ort') throw new InvalidArgumentError(`expected wasm or ort; got '${v}'`);
      return v;
    },
    'wasm',
  )
  .parse()
  .opts<{ model?: string; seconds: number; requests: number; coldStarts: number; maxSeconds: number; s3: boolean; engine: string }>();

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
  stop(): Promise<void>;
}

/** Starts the bundled server and times process start -> first 200 from POST /v1/classify. */
async function startServer(entry: string, env: Record<string, string>, body: Uint8Array<ArrayBuffer>): Promise<Server> {
  const port = await freePort();
  const url = `http://127.0.0.1:${port}`;
  const t0 = performance.now();
  const child = spawn(process.execPath, [entry], {
    env: { ...process.env, ...env, EDGETUNE_ENGINE: opts.engine, PORT: String(port), LOG_LEVEL: 'info' },
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
  child.stdout?.removeAllListeners('data');
  child.stdout?.resume();
  return {
    child,
    url,
    coldStartMs,
    listenMs,
    loadMs: loaded?.loadMs,
    warmupMs: loaded?.warmupMs,
    stop: async () => {
      child.kill('SIGTERM');
      await new Promise((r) => child.once('exit', r));
    },
  };
}

function rssMiB(pid: number): number {
  const m = readFileSync(`/proc/${pid}/status`, 'utf8').match(/VmRSS:\s+(\d+) kB/);
  return m ? Number(m[1]) / 1024 : Number.NaN;
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

  const colds: Record<string, Server[]> = { folder: [] };
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
    colds['embedded S3'] = [];
  }
  for (let i = 0; i < opts.coldStarts; i++) {
    const a = await startServer(entry, { MODEL_URI: modelDir }, first);
    colds.folder.push(a);
    await a.stop();
    if (s3Env) {
      const b = await startServer(entry, s3Env, first);
      colds['embedded S3'].push(b);
      await b.stop();
    }
  }

  const server = await startServer(entry, s3Env ?? { MODEL_URI: modelDir }, first);
  cleanups.push(() => server.stop());
  const phases: Phase[] = [];
  phases.push(await load(server.url, bodies, 'warm-up', 1, { amount: 20 }));
  phases.push(await load(server.url, bodies, 'concurrency 1', 1, { seconds: opts.seconds }));
  phases.push(await load(server.url, bodies, 'concurrency 8', 8, { seconds: opts.seconds }));
  const sent = 1 + phases.reduce((n, p) => n + p.requests, 0);
  if (sent < opts.requests) {
    phases.push(await load(server.url, bodies, 'top-up', 8, { amount: opts.requests - sent, capSeconds: opts.maxSeconds }));
  }
  const total = 1 + phases.reduce((n, p) => n + p.requests, 0);
  const rss = rssMiB(server.child.pid!);

  const f = (x: number) => x.toFixed(1).padStart(8);
  process.stdout.write(
    `\nclassify API on Node (${entry.replace(ROOT + '/', '')}, engine ${opts.engine}), ${manifest.input.size}px alpha ${manifest.backbone.alpha}\n`,
  );
  process.stdout.write(`phase            conns  requests  non-200     req/s   p50 ms   p95 ms   p99 ms\n`);
  for (const p of phases) {
    process.stdout.write(
      `${p.name.padEnd(16)} ${String(p.connections).padStart(5)} ${String(p.requests).padStart(9)} ${String(p.non200).padStart(8)} ${f(p.rps)}  ${f(p.p50)} ${f(p.p95)} ${f(p.p99)}\n`,
    );
  }
  for (const [where, runs] of Object.entries(colds)) {
    const sorted = [...runs].sort((a, b) => a.coldStartMs - b.coldStartMs);
    const med = sorted[Math.floor((sorted.length - 1) / 2)];
    process.stdout.write(
      `cold start (process start -> first 200), model from ${where}: median ${med.coldStartMs.toFixed(0)} ms ` +
        `(listening at ${med.listenMs?.toFixed(0) ?? '?'} ms, model fetch+build ${med.loadMs ?? '?'} ms, warm-up ${med.warmupMs ?? '?'} ms); ` +
        `runs ${sorted.map((x) => x.coldStartMs.toFixed(0)).join(', ')} ms\n`,
    );
  }
  process.stdout.write(`RSS after ${total} requests: ${rss.toFixed(0)} MiB\n`);
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
