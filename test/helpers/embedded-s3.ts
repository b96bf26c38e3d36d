// One embedded S3 for a test file: started before its tests with EDGETUNE_S3_ENDPOINT pointing at
// it (core/s3/client.ts signs with its key pair), stopped and its folder removed after them.
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll } from 'vitest';
import { type EmbeddedS3, startS3rver } from '../../core/s3/embedded.js';

/** The S3 and a scratch folder (`tmp`) of the file, set once its beforeAll ran; bucket `edgetune`. */
export function useEmbeddedS3(name: string): { s3: EmbeddedS3; tmp: string } {
  const ctx = {} as { s3: EmbeddedS3; tmp: string };
  beforeAll(async () => {
    ctx.tmp = await mkdtemp(path.join(os.tmpdir(), `edgetune-${name}-`));
    ctx.s3 = await startS3rver({ port: 0, dir: path.join(ctx.tmp, 's3'), buckets: ['edgetune'] });
    process.env.EDGETUNE_S3_ENDPOINT = ctx.s3.endpoint;
  });
  afterAll(async () => {
    await ctx.s3?.close();
    delete process.env.EDGETUNE_S3_ENDPOINT;
    if (ctx.tmp) await rm(ctx.tmp, { recursive: true, force: true });
  });
  return ctx;
}
