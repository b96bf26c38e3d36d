import { existsSync, readdirSync } from 'node:fs';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { type Browser, chromium } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { initBackend } from '../core/backend.js';
import { configFromEnv } from '../functions/config.js';
import { silentLogger } from '../functions/logger.js';
import { type NodeServer, startNodeServer } from '../functions/node.js';
import { makeModelDir } from './helpers/model-dir.js';
import { ALPACA_DIR, hasAlpaca } from './helpers/shared.js';
import { makePhoto } from './helpers/tiny-model.js';

const CHROMIUM = '/usr/bin/chromium';
const hasChromium = existsSync(CHROMIUM);
if (!hasChromium) console.warn(`page-browser: skipped: ${CHROMIUM} not found (install with: apt-get install -y chromium)`);

let dir: string;
let server: NodeServer;
let browser: Browser;

describe.skipIf(!hasChromium)('upload page in headless Chromium', () => {
  beforeAll(async () => {
    await initBackend('auto', () => {});
    dir = await mkdtemp(path.join(os.tmpdir(), 'edgetune-page-'));
    await makeModelDir(path.join(dir, 'model'), { inputSize: 32 });
    server = await startNodeServer({
      config: configFromEnv({ MODEL_URI: path.join(dir, 'model') }),
      port: 0,
      hostname: '127.0.0.1',
      log: silentLogger,
      waitForModel: true,
    });
    browser = await chromium.launch({
      executablePath: CHROMIUM,
      headless: true,
      args: [
        '--no-sandbox',
        '--disable-gpu',
        '--disable-background-networking',
        '--disable-component-update',
        '--disable-sync',
        '--no-first-run',
      ],
    });
  });
  afterAll(async () => {
    await browser?.close();
    await server?.close();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  it(`shows the label, probability bars, latency and model version for an uploaded ${hasAlpaca ? 'alpaca photo' : 'generated JPEG (no ../shared)'}`, async () => {
    let photo: string;
    if (hasAlpaca) {
      photo = path.join(ALPACA_DIR, 'alpaca', readdirSync(path.join(ALPACA_DIR, 'alpaca')).sort()[0]);
    } else {
      photo = path.join(dir, 'photo.jpg');
      await writeFile(photo, await makePhoto('jpeg', 640, 480));
    }
    const expected = await (
      await fetch(`${server.url}/v1/classify`, { method: 'POST', body: await readFile(photo), headers: { 'content-type': 'image/jpeg' } })
    ).json();

    const page = await browser.newPage();
    const errors: string[] = [];
    page.on('pageerror', (e) => errors.push(e.message));
    // The page runs under its CSP (inline script and style allowed by hash only): no violation reports.
    page.on('console', (m) => {
      if (/Content Security Policy/i.test(m.text())) errors.push(m.text());
    });
    await page.goto(server.url + '/');
    await expect.poll(() => page.textContent('#model')).toMatch(/version local-[0-9a-f]{8}.*validation accuracy 90\.0%/);
    await page.setInputFiles('#file', photo);
    await page.waitForFunction(() => /\(\d+\.\d%\)$/.test(document.querySelector('[data-testid=label]')?.textContent ?? ''));
    const label = await page.textContent('[data-testid=label]');
    expect(label).toBe(`${expected.label} (${(expected.score * 100).toFixed(1)}%)`);
    expect(await page.locator('#bars .bar').count()).toBe(2);
    expect(await page.textContent('#latency')).toMatch(/Round trip \d+ ms · server [\d.]+ ms/);
    expect(await page.isVisible('#preview')).toBe(true);
    expect(await page.textContent('#error')).toBe('');

    // An unsupported file shows the problem detail instead of a label.
    await page.setInputFiles('#file', { name: 'notes.txt', mimeType: 'text/plain', buffer: Buffer.from('not an image') });
    await page.waitForFunction(() => (document.querySelector('#error')?.textContent ?? '').length > 0);
    expect(await page.textContent('#error')).toMatch(/^Unsupported Media Type: /);
    expect(errors).toEqual([]);
  });

  it('renders the API reference at /docs from this origin only (swagger-ui from node_modules), under its CSP', async () => {
    const page = await browser.newPage();
    const errors: string[] = [];
    const origins = new Set<string>();
    page.on('pageerror', (e) => errors.push(e.message));
    page.on('console', (m) => {
      if (/Content Security Policy/i.test(m.text())) errors.push(m.text());
    });
    page.on('request', (r) => {
      if (!r.url().startsWith('data:')) origins.add(new URL(r.url()).origin);
    });
    await page.goto(`${server.url}/docs`);
    await page.waitForSelector('.opblock-summary-path', { timeout: 20_000 });
    const paths = await page.locator('.opblock-summary-path').allTextContents();
    expect(paths.join(' ')).toContain('/v1/classify');
    expect([...origins]).toEqual([new URL(server.url).origin]);
    expect(errors).toEqual([]);
  });
});
