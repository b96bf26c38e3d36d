import { createHash, timingSafeEqual } from 'node:crypto';
import type { SecretsManagerClient } from '@aws-sdk/client-secrets-manager';

const digest = (s: string) => createHash('sha256').update(s).digest();

/**
 * Bearer-token check in constant time: both sides are hashed first so neither the key's length
 * nor a common prefix shows in the timing, and every key is compared (no early exit).
 */
export function keyMatches(presented: string, keys: readonly string[]): boolean {
  const p = digest(presented);
  let ok = false;
  for (const k of keys) ok = timingSafeEqual(p, digest(k)) || ok;
  return ok;
}

/** `Authorization: Bearer <token>` -> token, or undefined. */
export function bearerToken(header: string | undefined): string | undefined {
  const m = header?.match(/^Bearer[ ]+([^\s]+)\s*$/i);
  return m?.[1];
}

/** Parses a secret string: a JSON array, `{"keys": [...]}`, `{"apiKeys": [...]}`, or comma-separated. */
export function parseKeySecret(secret: string): string[] {
  const text = secret.trim();
  let keys: unknown;
  if (text.startsWith('[') || text.startsWith('{')) {
    try {
      const j = JSON.parse(text);
      keys = Array.isArray(j) ? j : (j.keys ?? j.apiKeys);
    } catch {
      throw new Error('the API key secret looks like JSON but does not parse');
    }
    if (!Array.isArray(keys) || !keys.every((k) => typeof k === 'string')) {
      throw new Error('the API key secret must be a JSON array of strings or {"keys": [...]}');
    }
  } else {
    keys = text.split(',');
  }
  return (keys as string[]).map((k) => k.trim()).filter(Boolean);
}

export async function keysFromSecret(arn: string, client?: SecretsManagerClient): Promise<string[]> {
  // Loaded here, not at start-up: most servers never read a secret, and evaluating the SDK is cold-start time.
  const sm = await import('@aws-sdk/client-secrets-manager');
  const out = await (client ?? new sm.SecretsManagerClient({})).send(new sm.GetSecretValueCommand({ SecretId: arn }));
  if (!out.SecretString) throw new Error(`secret ${arn} has no SecretString`);
  const keys = parseKeySecret(out.SecretString);
  if (keys.length === 0) throw new Error(`secret ${arn} holds no API keys`);
  return keys;
}
