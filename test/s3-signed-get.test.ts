// The SDK-free GET serving reads models with (core/s3/signed-get.ts): its SigV4 signature against
// AWS's documented example and the SDK's own signer, its reads against the embedded S3 (whose guard
// checks every signature with the SDK's signer), and that a read through it never loads the SDK.
import { EventEmitter } from 'node:events';
import https from 'node:https';
import path from 'node:path';
import { PassThrough } from 'node:stream';
import { SignatureV4 } from '@smithy/signature-v4';
import { describe, expect, it, vi } from 'vitest';
import { readCurrentPointer } from '../core/model-loader.js';
import { getObject, isNotFound, ObjectTooLargeError, putObject, staticS3Access } from '../core/s3/client.js';
import { isRetryable } from '../core/s3/retry.js';
import { encodeKey, objectAddress, S3ResponseError, signedGetObject, signGet } from '../core/s3/signed-get.js';
import { NodeSha256 } from '../core/s3/sigv4-verify.js';
import { useEmbeddedS3 } from './helpers/embedded-s3.js';
import { runRecordingResolved } from './helpers/resolved-child.js';
import { REPO_DIR } from './helpers/shared.js';

const EXAMPLE = { accessKeyId: 'AKIAIOSFODNN7EXAMPLE', secretAccessKey: 'wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY' };

describe('signGet', () => {
  it("reproduces the signature of AWS's documented GetObject example (examplebucket/test.txt, Range)", () => {
    const h = signGet({
      host: 'examplebucket.s3.amazonaws.com',
      path: '/test.txt',
      region: 'us-east-1',
      credentials: EXAMPLE,
      extra: { Range: 'bytes=0-9' },
      now: new Date('2013-05-24T00:00:00Z'),
    });
    expect(h.authorization).toBe(
      'AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/aws4_request,' +
        'SignedHeaders=host;range;x-amz-content-sha256;x-amz-date,' +
        'Signature=f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41',
    );
  });

  it("agrees with the AWS SDK's signer on odd keys, a session token and If-None-Match", async () => {
    const credentials = { ...EXAMPLE, sessionToken: 'FwoGZXIvYXdzEJr//////////wEaDExample+Token/==' };
    const now = new Date('2026-12-03T11:15:07Z');
    for (const key of ['models/alpaca/current.json', "a b/ü+é/(x)!*~'.json", 'models/x//double/slash', 'ends/with/']) {
      const access = { region: 'eu-west-1', credentials };
      const url = objectAddress(access, 'my-bucket', key);
      const ours = signGet({
        host: url.host,
        path: url.objectPath,
        region: 'eu-west-1',
        credentials,
        extra: { 'If-None-Match': '"abc"' },
        now,
      });
      const signer = new SignatureV4({
        credentials,
        region: 'eu-west-1',
        service: 's3',
        sha256: NodeSha256,
        uriEscapePath: false,
        applyChecksum: false,
      });
      const { authorization: _, ...headers } = ours;
      const theirs = await signer.sign(
        { method: 'GET', protocol: 'https:', hostname: url.host, path: url.objectPath, query: {}, headers },
        { signingDate: now },
      );
      // The SDK separates the three parts with ', ', we with ','; S3 takes either.
      expect(
        ours.authorization.split(',').map((p) => p.trim()),
        key,
      ).toEqual(String(theirs.headers.authorization).split(', '));
      expect(ours['x-amz-security-token']).toBe(credentials.sessionToken);
    }
  });

  it('encodes keys as S3 signs them and addresses AWS virtual-hosted, a local endpoint path-style', () => {
    expect(encodeKey("a b/ü+é/(x)!*~'.json")).toBe('a%20b/%C3%BC%2B%C3%A9/%28x%29%21%2A~%27.json');
    const aws = objectAddress({ region: 'eu-west-1', credentials: EXAMPLE }, 'my-bucket', 'models/x/current.json');
    expect([aws.href, aws.objectPath]).toEqual(['https://my-bucket.s3.eu-west-1.amazonaws.com/', '/models/x/current.json']);
    const local = objectAddress({ endpoint: 'http://127.0.0.1:4569', region: 'us-east-1', credentials: EXAMPLE }, 'edgetune', 'a b');
    expect([local.host, local.objectPath]).toEqual(['127.0.0.1:4569', '/edgetune/a%20b']);
  });
});

/** Stubs https.request: answers in turn, recording the host and Authorization of each request. */
function stubHttps(answers: { status: number; headers: Record<string, string>; body: string }[]) {
  const sent: { host: string; authorization: string }[] = [];
  const spy = vi.spyOn(https, 'request').mockImplementation(((
    opts: { hostname: string; headers: Record<string, string> },
    cb: (r: unknown) => void,
  ) => {
    sent.push({ host: opts.hostname, authorization: opts.headers.authorization });
    const a = answers[sent.length - 1];
    const req = Object.assign(new EventEmitter(), {
      setTimeout: () => req,
      destroy: () => {},
      end: () => {
        const res = Object.assign(new PassThrough(), { statusCode: a.status, headers: a.headers });
        cb(res);
        res.end(a.body);
      },
    });
    return req;
  }) as unknown as typeof https.request);
  return { sent, restore: () => spy.mockRestore() };
}

describe('signedGetObject on AWS', () => {
  it("follows S3's answer that the bucket lives in another region once, signed for that region", async () => {
    const stub = stubHttps([
      {
        status: 400,
        headers: { 'x-amz-bucket-region': 'us-east-1' },
        body: '<Error><Code>AuthorizationHeaderMalformed</Code><Region>us-east-1</Region></Error>',
      },
      { status: 200, headers: { etag: '"e1"' }, body: 'model bytes' },
    ]);
    try {
      const got = await signedGetObject({ region: 'eu-west-1', credentials: EXAMPLE }, 'my-bucket', 'models/x/serving.onnx');
      expect(got).toEqual({ body: Buffer.from('model bytes'), etag: '"e1"' });
      expect(stub.sent.map((s) => s.host)).toEqual(['my-bucket.s3.eu-west-1.amazonaws.com', 'my-bucket.s3.us-east-1.amazonaws.com']);
      expect(stub.sent[1].authorization).toMatch(/\/us-east-1\/s3\/aws4_request,/);
    } finally {
      stub.restore();
    }
  });

  it('a body that ends before its Content-Length is a retryable failure, not a short file', async () => {
    const stub = stubHttps([{ status: 200, headers: { 'content-length': '100', etag: '"e1"' }, body: 'only part' }]);
    try {
      const e = await signedGetObject({ region: 'eu-west-1', credentials: EXAMPLE }, 'my-bucket', 'models/x/current.json').catch((x) => x);
      expect(e.message).toMatch(/9 of 100 bytes arrived/);
      expect(isRetryable(e)).toBe(true);
    } finally {
      stub.restore();
    }
  });
});

describe('staticS3Access: when the SDK is not needed', () => {
  const aws = { AWS_ACCESS_KEY_ID: 'AKIA', AWS_SECRET_ACCESS_KEY: 'secret', AWS_REGION: 'eu-west-1' };
  it('takes the environment key pair (and token) in a standard-partition region, as Lambda sets them', () => {
    expect(staticS3Access({ ...aws, AWS_SESSION_TOKEN: 't' })).toEqual({
      region: 'eu-west-1',
      credentials: { accessKeyId: 'AKIA', secretAccessKey: 'secret', sessionToken: 't' },
    });
  });
  it('leaves everything else to the SDK: no key pair, no region, custom endpoints, FIPS, dual-stack, other partitions', () => {
    for (const env of [
      { AWS_PROFILE: 'dev', AWS_REGION: 'eu-west-1' },
      { AWS_CONTAINER_CREDENTIALS_RELATIVE_URI: '/v2/creds', AWS_REGION: 'eu-west-1' },
      { ...aws, AWS_REGION: undefined },
      { ...aws, AWS_REGION: undefined, AWS_DEFAULT_REGION: 'eu-west-1' },
      { ...aws, AWS_ENDPOINT_URL_S3: 'https://s3.example.com' },
      { ...aws, AWS_USE_FIPS_ENDPOINT: 'true' },
      { ...aws, AWS_USE_DUALSTACK_ENDPOINT: '1' },
      { ...aws, AWS_REGION: 'cn-north-1' },
      { ...aws, AWS_REGION: 'us-gov-west-1' },
      { ...aws, EDGETUNE_S3_CLIENT: 'sdk' },
      { ...aws, AWS_PROFILE: 'dev' },
    ]) {
      expect(staticS3Access(env), JSON.stringify(env)).toBeUndefined();
    }
  });
});

describe('signedGetObject against the embedded S3', () => {
  const env = useEmbeddedS3('signed-get');
  const access = () => ({ endpoint: env.s3.endpoint, region: 'us-east-1', credentials: env.s3.credentials });

  it('reads bytes and the ETag of keys with spaces and non-ASCII; If-None-Match gives a 304 error, not a retry', async () => {
    const bytes = Buffer.from(Array.from({ length: 300_000 }, (_, i) => (i * 7) % 256));
    for (const key of ['models/x/serving.onnx', 'odd/a b/ü+(1)!.bin']) {
      const put = await putObject(`s3://edgetune/${key}`, bytes);
      const got = await signedGetObject(access(), 'edgetune', key);
      expect(got.body.equals(bytes)).toBe(true);
      expect(got.etag).toBe(put.etag);
      const again = await signedGetObject(access(), 'edgetune', key, { ifNoneMatch: got.etag }).catch((e) => e);
      expect(again).toBeInstanceOf(S3ResponseError);
      expect(again.$metadata.httpStatusCode).toBe(304);
      expect(isRetryable(again)).toBe(false);
    }
  });

  it('a missing key is NoSuchKey (isNotFound), a wrong secret is a 403 nobody retries, too large is refused', async () => {
    const missing = await signedGetObject(access(), 'edgetune', 'nope/none.json').catch((e) => e);
    expect(isNotFound(missing)).toBe(true);
    expect(missing.name).toBe('NoSuchKey');
    const wrong = await signedGetObject(
      { ...access(), credentials: { ...env.s3.credentials, secretAccessKey: 'wrong' } },
      'edgetune',
      'models/x/serving.onnx',
    ).catch((e) => e);
    expect(wrong.$metadata.httpStatusCode).toBe(403);
    expect(wrong.name).toBe('SignatureDoesNotMatch');
    expect(isRetryable(wrong)).toBe(false);
    await expect(signedGetObject(access(), 'edgetune', 'models/x/serving.onnx', { maxBytes: 1000 })).rejects.toBeInstanceOf(
      ObjectTooLargeError,
    );
    await expect(getObject('s3://edgetune/models/x/serving.onnx', { maxBytes: 1000 })).rejects.toBeInstanceOf(ObjectTooLargeError);
  });

  it("readCurrentPointer goes through it: the pointer, then 'not-modified' for its ETag, 'missing' for none", async () => {
    const pointer = {
      schemaVersion: 1,
      name: 'ptr',
      version: '20261203T111507Z-0123abcd',
      promotedAt: '2026-12-03T11:15:07Z',
      reason: 'test',
      history: [],
    };
    await putObject('s3://edgetune/models/ptr/current.json', JSON.stringify(pointer));
    const p = await readCurrentPointer('edgetune', 'models/ptr');
    expect(p).toMatchObject({ current: { version: '20261203T111507Z-0123abcd' } });
    expect(await readCurrentPointer('edgetune', 'models/ptr', (p as { etag: string }).etag)).toBe('not-modified');
    expect(await readCurrentPointer('edgetune', 'models/none')).toBe('missing');
  });

  it('a process that reads through getObject never loads the AWS SDK, nor s3rver', async () => {
    await putObject('s3://edgetune/models/x/manifest.json', '{"n":1}');
    const script = `
      const { createRequire } = await import('node:module');
      const { getObject } = await import(${JSON.stringify(path.join(REPO_DIR, 'core/s3/client.ts'))});
      const body = (await getObject('s3://edgetune/models/x/manifest.json')).body.toString();
      const loaded = Object.keys(createRequire(import.meta.url).cache);
      const sdk = loaded.filter((k) => k.includes('/@aws-sdk/client-s3/')).length;
      const s3rver = loaded.filter((k) => k.includes('/node_modules/s3rver/')).length;
      console.log(JSON.stringify({ body, sdk, s3rver }));`;
    const { out, urls } = await runRecordingResolved(['--input-type=module', '-e', script], path.join(env.tmp, 'resolved.txt'), {
      EDGETUNE_S3_ENDPOINT: env.s3.endpoint,
      EDGETUNE_S3_ACCESS_KEY_ID: env.s3.credentials.accessKeyId,
      EDGETUNE_S3_SECRET_ACCESS_KEY: env.s3.credentials.secretAccessKey,
    });
    expect(out).toEqual({ body: '{"n":1}', sdk: 0, s3rver: 0 });
    // core/s3/sdk.ts, the one module that requires the SDK, was never even resolved.
    expect(urls.some((u) => u.endsWith('/core/s3/client.ts'))).toBe(true);
    expect(urls.filter((u) => u.endsWith('/core/s3/sdk.ts'))).toEqual([]);
  }, 90_000);
});
