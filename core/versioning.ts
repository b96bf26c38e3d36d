import { createHash, randomBytes } from 'node:crypto';
import { z } from 'zod';
import { formatIssues } from './zod-issues.js';

/** `20261127T201500Z-3fa2c1d0`: UTC second + 8 hex of a content hash. Sorts by time as a string. */
export const VERSION_RE = /^\d{8}T\d{6}Z-[0-9a-f]{8}$/;

/** The same shape as an IAM/S3 ARN wildcard (`?` is one character): scopes the job role's delete to version folders. */
export const VERSION_GLOB = '????????T??????Z-????????';

export function isVersion(s: string): boolean {
  return VERSION_RE.test(s);
}

export function makeVersion(contentHash: string, at: Date = new Date()): string {
  const ts = at
    .toISOString()
    .replace(/[-:]/g, '')
    .replace(/\.\d{3}Z$/, 'Z');
  return `${ts}-${contentHash.slice(0, 8)}`;
}

/**
 * A name for a new published version: the UTC second + 8 random hex digits, so two publishers of the
 * same folder in the same second still get different names (publishing also claims it with a
 * conditional create).
 */
export function newVersionName(at: Date = new Date()): string {
  return makeVersion(randomBytes(4).toString('hex'), at);
}

export function sha256(data: Uint8Array | string): string {
  return createHash('sha256').update(data).digest('hex');
}

export const PromotionSchema = z.object({
  version: z.string(),
  promotedAt: z.string(),
  valAccuracy: z.number().optional(),
  reason: z.string(),
});
export type Promotion = z.infer<typeof PromotionSchema>;

/**
 * `models/<name>/current.json`: the live version, plus the promotions before it (newest first)
 * so `models rollback` knows where to go back to.
 */
export const CurrentSchema = z.object({
  schemaVersion: z.literal(1),
  name: z.string(),
  version: z.string().regex(VERSION_RE),
  promotedAt: z.string(),
  valAccuracy: z.number().optional(),
  reason: z.string(),
  history: z.array(PromotionSchema),
});
export type Current = z.infer<typeof CurrentSchema>;

export function parseCurrent(body: Buffer | string, where: string): Current {
  let json: unknown;
  try {
    json = JSON.parse(body.toString());
  } catch (e) {
    throw new Error(`${where} is not JSON: ${(e as Error).message}`);
  }
  const r = CurrentSchema.safeParse(json);
  if (!r.success) throw new Error(`${where} is not a valid pointer: ${formatIssues(r.error)}`);
  return r.data;
}
