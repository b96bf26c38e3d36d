import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { handle } from 'hono/aws-lambda';
import { edgetuneConfig } from '../core/config.js';
import { configFromEnv, LAMBDA_MAX_BODY_BYTES } from './config.js';
import { sharpDecoder } from './decoder.js';
import { createRuntime } from './runtime.js';

// In the bundle the tfjs WASM files sit next to index.mjs (EDGETUNE_WASM_DIR still overrides).
const wasmDir = edgetuneConfig().EDGETUNE_WASM_DIR ?? path.dirname(fileURLToPath(import.meta.url));

// Nothing here renders SVG: only the JPEG, PNG, WebP and GIF loaders stay in libvips.
const decoder = sharpDecoder();
const rt = createRuntime(configFromEnv(process.env, {}, { maxBodyBytes: LAMBDA_MAX_BODY_BYTES }), decoder.decode, { wasmDir });
// Top-level await: Lambda runs it during init (not counted against the first request's timeout).
// sharp loads while the model downloads.
await Promise.all([rt.ready, decoder.load()]);

/** API Gateway HTTP API (payload v2) and Lambda function URLs. */
export const handler = handle(rt.app);
