import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { handle } from 'hono/aws-lambda';
import { decodeImage } from '../core/image.js';
import { configFromEnv } from './config.js';
import { createRuntime } from './runtime.js';

// In the bundle the tfjs WASM files sit next to index.mjs.
process.env.EDGETUNE_WASM_DIR ??= path.dirname(fileURLToPath(import.meta.url));

const rt = createRuntime(configFromEnv(), decodeImage);
// Top-level await: Lambda runs it during init (not billed, not counted against the first request's timeout).
await rt.ready;

/** API Gateway HTTP API (payload v2) and Lambda function URLs. */
export const handler = handle(rt.app);
