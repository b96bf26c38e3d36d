import { readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { handle } from 'hono/lambda-edge';
import { edgetuneConfig } from '../core/config.js';
import { decodeImageJs, initVips } from '../core/image-js.js';
import { configFromEnv, EDGE_MAX_BODY_BYTES } from './config.js';
import { truncatedBodyResult } from './edge-body.js';
import { createRuntime } from './runtime.js';

const here = path.dirname(fileURLToPath(import.meta.url));
// The tfjs WASM files sit next to the bundle (EDGETUNE_WASM_DIR still overrides).
const wasmDir = edgetuneConfig().EDGETUNE_WASM_DIR ?? here;

/**
 * Lambda@Edge has no environment variables: the deployment writes `edge-config.json`
 * ({"MODEL_URI": "s3://...", ...}, same names as the env vars) next to the bundle.
 */
function edgeEnv(): Record<string, string | undefined> {
  try {
    const json = JSON.parse(readFileSync(path.join(here, 'edge-config.json'), 'utf8')) as Record<string, unknown>;
    return { ...process.env, ...Object.fromEntries(Object.entries(json).map(([k, v]) => [k, String(v)])) };
  } catch {
    return process.env;
  }
}

// No sharp at the edge: images are decoded by libvips compiled to WASM.
const rt = createRuntime(configFromEnv(edgeEnv(), {}, { maxBodyBytes: EDGE_MAX_BODY_BYTES }), decodeImageJs, { wasmDir });
// Start libvips during init too, so the first request does not pay for compiling its WASM.
await Promise.all([rt.ready, initVips()]);

/** CloudFront origin-request (or viewer-request) trigger with the body included. */
const honoHandler = handle(rt.app);
export const handler: typeof honoHandler = async (event, ...rest) => truncatedBodyResult(event) ?? honoHandler(event, ...rest);
