import { GetSecretValueCommand, SecretsManagerClient } from '@aws-sdk/client-secrets-manager';
import { mockClient } from 'aws-sdk-client-mock';
import { afterEach, describe, expect, it } from 'vitest';
import { decodeImage } from '../core/image.js';
import { bearerToken, keyMatches, keysFromSecret, parseKeySecret } from '../functions/auth.js';
import { ConfigError, configFromEnv } from '../functions/config.js';
import { memoryLogger } from '../functions/logger.js';
import { createRuntime } from '../functions/runtime.js';

const quiet = () => {};
const sm = mockClient(SecretsManagerClient);
afterEach(() => sm.reset());

// No model configured: an authorised /v1 request gets past auth and answers 503; a refused one 401.
const runtime = (env: Record<string, string>) => createRuntime(configFromEnv(env), decodeImage, { log: memoryLogger(), backendLog: quiet });
const get = (rt: ReturnType<typeof runtime>, pathname: string, headers: Record<string, string> = {}) =>
  rt.app.request(pathname, { headers });

describe('API keys', () => {
  it('compares keys in constant time over hashes and parses bearer headers', () => {
    expect(keyMatches('k2', ['k1', 'k2'])).toBe(true);
    expect(keyMatches('k', ['k1', 'k2'])).toBe(false);
    expect(keyMatches('', [])).toBe(false);
    expect(bearerToken('Bearer abc.def')).toBe('abc.def');
    expect(bearerToken('bearer   x ')).toBe('x');
    expect(bearerToken('Basic abc')).toBeUndefined();
    expect(bearerToken(undefined)).toBeUndefined();
  });

  it('protects /v1 with keys from API_KEYS; health, docs and the page stay open', async () => {
    const rt = runtime({ API_KEYS: 'alpha-key, beta-key' });
    const noKey = await get(rt, '/v1/model');
    expect(noKey.status).toBe(401);
    expect(noKey.headers.get('www-authenticate')).toMatch(/^Bearer/);
    expect(noKey.headers.get('content-type')).toBe('application/problem+json');
    expect((await get(rt, '/v1/model', { authorization: 'Bearer wrong' })).status).toBe(401);
    expect((await get(rt, '/v1/model', { authorization: 'Bearer beta-key' })).status).toBe(503);
    const post = await rt.app.request('/v1/classify', { method: 'POST', body: 'x', headers: { 'content-type': 'image/jpeg' } });
    expect(post.status).toBe(401);
    for (const open of ['/healthz', '/openapi.json', '/docs', '/']) expect((await get(rt, open)).status).toBe(200);
  });

  it('reads keys from a Secrets Manager ARN once, and answers 503 (then retries) when the secret cannot be read', async () => {
    const arn = 'arn:aws:secretsmanager:eu-west-1:123456789012:secret:edgetune-keys';
    sm.on(GetSecretValueCommand, { SecretId: arn })
      .rejectsOnce(new Error('AccessDenied'))
      .resolves({ SecretString: '{"keys":["s3cret"]}' });
    const rt = runtime({ API_KEYS_SECRET_ARN: arn });
    const first = await get(rt, '/v1/model', { authorization: 'Bearer s3cret' });
    expect(first.status).toBe(503);
    expect((await first.json()).detail).toMatch(/API keys/);
    expect((await get(rt, '/v1/model', { authorization: 'Bearer s3cret' })).status).toBe(503); // past auth: no model
    expect((await get(rt, '/v1/model', { authorization: 'Bearer nope' })).status).toBe(401);
    expect(sm.commandCalls(GetSecretValueCommand)).toHaveLength(2);
  });

  it('accepts the secret as a JSON array, {"keys"}, or a comma list, and rejects malformed ones', async () => {
    expect(parseKeySecret('["a","b"]')).toEqual(['a', 'b']);
    expect(parseKeySecret('{"apiKeys":["a"]}')).toEqual(['a']);
    expect(parseKeySecret(' a, b ,,c ')).toEqual(['a', 'b', 'c']);
    expect(() => parseKeySecret('{"keys": 3}')).toThrow(/array/);
    expect(() => parseKeySecret('[broken')).toThrow(/JSON/);
    sm.on(GetSecretValueCommand).resolves({ SecretString: '' });
    await expect(keysFromSecret('arn:x', new SecretsManagerClient({ region: 'eu-west-1' }))).rejects.toThrow(/SecretString/);
  });
});

describe('configuration', () => {
  it('restricts CORS to the configured origins, or sends none', async () => {
    const rt = runtime({ CORS_ORIGINS: 'https://a.example,https://b.example' });
    const ok = await get(rt, '/healthz', { origin: 'https://b.example' });
    expect(ok.headers.get('access-control-allow-origin')).toBe('https://b.example');
    const other = await get(rt, '/healthz', { origin: 'https://evil.example' });
    expect(other.headers.get('access-control-allow-origin')).toBeNull();
    const none = runtime({ CORS_ORIGINS: 'none' });
    expect((await get(none, '/healthz', { origin: 'https://a.example' })).headers.get('access-control-allow-origin')).toBeNull();
  });

  it('validates environment values and fails fast on bad ones', () => {
    const c = configFromEnv({ MODEL_URI: 's3://b/models/x', MODEL_REFRESH_SECONDS: '5', MAX_BODY_BYTES: '1024' });
    expect(c).toMatchObject({ modelUri: 's3://b/models/x', refreshSeconds: 5, maxBodyBytes: 1024, maxBatch: 16, corsOrigins: ['*'] });
    expect(configFromEnv({}).maxBodyBytes).toBe(8 * 1024 * 1024);
    expect(() => configFromEnv({ MAX_BODY_BYTES: 'lots' })).toThrow(ConfigError);
  });
});
