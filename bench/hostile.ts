// npm run bench:hostile
// Time, peak memory, event-loop block and tensor growth per hostile request against the Node server
// (the same app as Lambda), one fresh child process per case so each peak RSS is its own.
// Cases: a normal photo (reference), a ~1.5 KB AVIF declaring 7071x7071, a batch of 4 of them, an
// interlaced 16-bit PNG, an 8000x8000 1-bit BMP and a 60,000-part multipart body.
import { execFileSync } from 'node:child_process';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { fileURLToPath } from 'node:url';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const ALPACA = path.resolve(process.env.EDGETUNE_SHARED_DIR ?? path.join(ROOT, '../shared'), 'datasets/alpaca/alpaca');

interface CaseInput {
  body: Uint8Array;
  type: string;
  route: 'classify' | 'batch';
}

async function makeInputs(dir: string): Promise<Record<string, CaseInput>> {
  const h = await import('../test/helpers/hostile-images.js');
  const photo = existsSync(ALPACA)
    ? new Uint8Array(readFileSync(path.join(ALPACA, readdirSync(ALPACA).filter((f) => /\.jpe?g$/i.test(f))[0])))
    : new Uint8Array(await (await import('../test/helpers/tiny-model.js')).makePhoto('jpeg', 640, 480, 1));
  const avif = await h.avifGiant(7071);
  const png16 = await h.png16Interlaced(4000, 4000);
  const batch = h.multipartOf([0, 1, 2, 3].map(() => ({ bytes: avif, type: 'image/jpeg' })));
  const parts = h.manyPartBody(60_000);
  const inputs: Record<string, CaseInput> = {
    'photo (reference)': { body: photo, type: 'image/jpeg', route: 'classify' },
    [`AVIF 7071x7071 (${avif.length} B) as image/jpeg`]: { body: avif, type: 'image/jpeg', route: 'classify' },
    [`batch of 4 such AVIFs (${batch.body.length} B)`]: { body: batch.body, type: batch.type, route: 'batch' },
    [`interlaced 16-bit PNG 4000x4000 (${Math.round(png16.length / 1024)} KB)`]: { body: png16, type: 'image/png', route: 'classify' },
    'BMP 8000x8000 1-bit (8.0 MB) as image/png': { body: h.bmpFile(8000, 8000, 1), type: 'image/png', route: 'classify' },
    [`60,000-part multipart (${(parts.body.length / 1e6).toFixed(1)} MB)`]: { body: parts.body, type: parts.type, route: 'batch' },
  };
  let i = 0;
  for (const [name, c] of Object.entries(inputs)) {
    await writeFile(path.join(dir, `case${i}.bin`), c.body);
    await writeFile(path.join(dir, `case${i}.json`), JSON.stringify({ name, type: c.type, route: c.route }));
    i++;
  }
  return inputs;
}

/** Child: one server, one warm-up request, then the case; prints one JSON line. */
async function runCase(dir: string, modelDir: string, index: number): Promise<void> {
  const meta = JSON.parse(await readFile(path.join(dir, `case${index}.json`), 'utf8')) as { name: string; type: string; route: string };
  const body = new Uint8Array(await readFile(path.join(dir, `case${index}.bin`)));
  const { startNodeServer } = await import('../functions/node.js');
  const { configFromEnv } = await import('../functions/config.js');
  const { silentLogger } = await import('../functions/logger.js');
  const { tf } = await import('../core/tf.js');
  const { makePhoto } = await import('../test/helpers/tiny-model.js');
  const server = await startNodeServer({
    config: configFromEnv({ MODEL_URI: modelDir, LOG_LEVEL: 'silent' }),
    port: 0,
    hostname: '127.0.0.1',
    log: silentLogger,
    waitForModel: true,
  });
  const post = (b: Uint8Array<ArrayBuffer>, type: string, route: string) =>
    fetch(`${server.url}/v1/classify${route === 'batch' ? '/batch' : ''}`, { method: 'POST', body: b, headers: { 'content-type': type } });
  const warm = await post(new Uint8Array(await makePhoto('jpeg', 320, 240, 3)), 'image/jpeg', 'classify');
  await warm.arrayBuffer();
  if (global.gc) global.gc();
  const rss0 = process.memoryUsage().rss;
  const tensors0 = tf.memory().numTensors;
  const loop = monitorEventLoopDelay({ resolution: 5 });
  loop.enable();
  const t0 = performance.now();
  const res = await post(body, meta.type, meta.route);
  const text = await res.text();
  const ms = performance.now() - t0;
  loop.disable();
  const peakMb = (process.resourceUsage().maxRSS * 1024 - rss0) / 2 ** 20;
  let detail = '';
  try {
    detail = String(JSON.parse(text).detail ?? '').slice(0, 70);
  } catch {}
  process.stdout.write(
    `${JSON.stringify({ name: meta.name, status: res.status, ms, peakMb, loopMaxMs: loop.max / 1e6, tensorGrowth: tf.memory().numTensors - tensors0, detail })}\n`,
  );
  // No server.close(): a refused upload's connection may still be sending, and close() would wait on it.
  process.exit(0);
}

async function main(): Promise<void> {
  if (process.argv[2] === '--case') return runCase(process.argv[3], process.argv[4], Number(process.argv[5]));
  const dir = await mkdtemp(path.join(os.tmpdir(), 'edgetune-hostile-'));
  try {
    const { makeModelDir } = await import('../test/helpers/model-dir.js');
    const { initBackend } = await import('../core/backend.js');
    await initBackend('auto', () => {});
    const modelDir = path.join(dir, 'model');
    await makeModelDir(modelDir, { classes: ['alpaca', 'not_alpaca'], inputSize: 224, alpha: 0.35, samples: 2 });
    const inputs = await makeInputs(dir);
    const rows: Record<string, unknown>[] = [];
    const only = process.env.HOSTILE_ONLY; // a substring of a case name, to re-run one case
    for (let i = 0; i < Object.keys(inputs).length; i++) {
      if (only && !Object.keys(inputs)[i].includes(only)) continue;
      const out = execFileSync(process.execPath, ['--import', 'tsx', fileURLToPath(import.meta.url), '--case', dir, modelDir, String(i)], {
        encoding: 'utf8',
        stdio: ['ignore', 'pipe', 'inherit'],
        maxBuffer: 1 << 20,
      });
      const row = JSON.parse(out.trim().split('\n').at(-1) as string);
      rows.push(row);
      process.stderr.write(`  ${row.name}: ${row.status}\n`);
    }
    const r1 = (x: number) => (Math.round(x * 10) / 10).toFixed(1);
    console.log(
      `\nbench:hostile (${os.cpus().length} cores, Node ${process.version}; one fresh server per case, after one warm-up photo)\n`,
    );
    console.log('| request | status | time ms | peak RSS over baseline MB | longest event-loop block ms | tensor growth | detail |');
    console.log('| --- | --- | --- | --- | --- | --- | --- |');
    for (const r of rows as {
      name: string;
      status: number;
      ms: number;
      peakMb: number;
      loopMaxMs: number;
      tensorGrowth: number;
      detail: string;
    }[]) {
      console.log(
        `| ${r.name} | ${r.status} | ${r1(r.ms)} | ${r1(Math.max(0, r.peakMb))} | ${r1(r.loopMaxMs)} | ${r.tensorGrowth} | ${r.detail} |`,
      );
    }
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

await main();
