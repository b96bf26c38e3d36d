import { readFile } from 'node:fs/promises';
import { createRequire } from 'node:module';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Env, Hono } from 'hono';
import { HttpProblem } from './problem.js';

/**
 * In-browser inference on the page: tfjs and its WASM backend served from this origin, out of the
 * installed packages (pinned in package.json, 4.22.0), never a CDN. A fixed allowlist of four files,
 * never a path from the request. The threaded WASM build is not served: the page is not
 * cross-origin isolated, so the browser has no SharedArrayBuffer and tfjs never asks for it.
 */
const JS = 'text/javascript; charset=utf-8';
const WASM = 'application/wasm';
export const BROWSER_ASSETS = {
  'tf.min.js': { module: '@tensorflow/tfjs/dist/tf.min.js', bundled: 'browser/tf.min.js', type: JS },
  'tf-backend-wasm.min.js': {
    module: '@tensorflow/tfjs-backend-wasm/dist/tf-backend-wasm.min.js',
    bundled: 'browser/tf-backend-wasm.min.js',
    type: JS,
  },
  // The function bundles already ship these two beside index.mjs for the server's own tfjs.
  'tfjs-backend-wasm.wasm': {
    module: '@tensorflow/tfjs-backend-wasm/dist/tfjs-backend-wasm.wasm',
    bundled: 'tfjs-backend-wasm.wasm',
    type: WASM,
  },
  'tfjs-backend-wasm-simd.wasm': {
    module: '@tensorflow/tfjs-backend-wasm/dist/tfjs-backend-wasm-simd.wasm',
    bundled: 'tfjs-backend-wasm-simd.wasm',
    type: WASM,
  },
} as const;
export type BrowserAssetName = keyof typeof BROWSER_ASSETS;
/** Where the page finds them (relative to `/`). */
export const BROWSER_ASSET_PREFIX = 'browser/';

/** Looks in node_modules first, then beside the bundle (scripts/build-functions.ts copies them into `browser/`). */
export type AssetLocator = (name: BrowserAssetName) => string[];

const bundleDir = path.dirname(fileURLToPath(import.meta.url));
export const defaultLocator: AssetLocator = (name) => {
  const entry = BROWSER_ASSETS[name];
  const candidates: string[] = [];
  try {
    candidates.push(createRequire(import.meta.url).resolve(entry.module));
  } catch {
    // Not installed (a deployed bundle): only the bundled copy.
  }
  candidates.push(path.join(bundleDir, entry.bundled));
  return candidates;
};

/** A folder holding the four files flat (tests; a deployment that ships them elsewhere). */
export const folderLocator =
  (dir: string): AssetLocator =>
  (name) => [path.join(dir, name)];

export function isBrowserAsset(name: string): name is BrowserAssetName {
  return Object.hasOwn(BROWSER_ASSETS, name);
}

/** Reads (once) the allowlisted files; undefined when the asset is not there. */
export function browserAssetReader(locate: AssetLocator = defaultLocator) {
  const cache = new Map<BrowserAssetName, Uint8Array<ArrayBuffer> | null>();
  return async (name: string): Promise<{ body: Uint8Array<ArrayBuffer>; type: string } | undefined> => {
    if (!isBrowserAsset(name)) return undefined;
    let body = cache.get(name);
    if (body === undefined) {
      body = null;
      for (const file of locate(name)) {
        try {
          body = new Uint8Array(await readFile(file));
          break;
        } catch {
          // next candidate
        }
      }
      cache.set(name, body);
    }
    return body ? { body, type: BROWSER_ASSETS[name].type } : undefined;
  };
}

const escapeRegex = (s: string) => s.replace(/[.-]/g, (c) => `\\${c}`);
const ROUTE = `/browser/:asset{${Object.keys(BROWSER_ASSETS).map(escapeRegex).join('|')}}`;

/** GET (and HEAD, which the page uses to decide whether to offer the toggle) /browser/<allowlisted file>. */
export function mountBrowserAssets<E extends Env>(app: Hono<E>, locate?: AssetLocator): void {
  const read = browserAssetReader(locate);
  app.get(ROUTE, async (c) => {
    const asset = await read(c.req.param('asset') ?? '');
    if (!asset) throw new HttpProblem(404, 'in-browser inference is not part of this deployment (the tfjs files are not installed)');
    return c.body(asset.body, 200, {
      'content-type': asset.type,
      'content-length': String(asset.body.byteLength),
      'cache-control': 'public, max-age=86400',
    });
  });
}
