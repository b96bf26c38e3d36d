// One S3 GetObject over node:http(s), signed with SigV4 here: how serving reads a model (current.json,
// manifest.json, serving.onnx, verification.json) without the AWS SDK, whose modules and first
// request's lazy set-up cost ~0.3 s of a cold start. Only for a static key pair (the environment's,
// as Lambda sets it, or a local endpoint's) and a plain address; core/s3/client.ts decides, and
// everything else goes through the SDK.
import { createHash, createHmac } from 'node:crypto';
import http from 'node:http';
import https from 'node:https';
import { ObjectTooLargeError } from './errors.js';

export interface StaticCredentials {
  accessKeyId: string;
  secretAccessKey: string;
  sessionToken?: string;
}

/** Where and as whom: a local endpoint (path-style addressing), or AWS S3 in `region` (virtual-hosted). */
export interface StaticS3Access {
  endpoint?: string;
  region: string;
  credentials: StaticCredentials;
}

/** The hash of an empty payload: a GET's x-amz-content-sha256. */
export const EMPTY_SHA256 = 'e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855';

/** An S3 error answer, shaped like the SDK's errors: `name` is S3's code, `$metadata.httpStatusCode` the status. */
export class S3ResponseError extends Error {
  readonly $metadata: { httpStatusCode: number };
  constructor(
    readonly Code: string,
    message: string,
    status: number,
    readonly region?: string,
  ) {
    super(message);
    this.name = Code;
    this.$metadata = { httpStatusCode: status };
  }
}

/** S3's URI encoding of an object key: every byte but A-Z a-z 0-9 - _ . ~ is %XX; '/' stays. */
export function encodeKey(key: string): string {
  return key
    .split('/')
    .map((s) => encodeURIComponent(s).replace(/[!'()*]/g, (c) => `%${c.charCodeAt(0).toString(16).toUpperCase()}`))
    .join('/');
}

/** `20130524T000000Z` */
const amzDate = (d: Date) =>
  d
    .toISOString()
    .replace(/[-:]/g, '')
    .replace(/\.\d{3}/, '');
const hmac = (key: string | Buffer, data: string) => createHmac('sha256', key).update(data, 'utf8').digest();

/**
 * The headers of a signed GET (no query string, empty payload): `host`, `x-amz-date`,
 * `x-amz-content-sha256`, the token if any, `extra` (lower-cased) and `authorization`, which signs them all.
 * `path` is sent as it is: S3 signs the path unnormalised and encoded once.
 */
export function signGet(req: {
  host: string;
  path: string;
  region: string;
  credentials: StaticCredentials;
  extra?: Record<string, string>;
  now?: Date;
}): Record<string, string> {
  const date = amzDate(req.now ?? new Date());
  const headers: Record<string, string> = { host: req.host, 'x-amz-content-sha256': EMPTY_SHA256, 'x-amz-date': date };
  for (const [k, v] of Object.entries(req.extra ?? {})) headers[k.toLowerCase()] = v;
  if (req.credentials.sessionToken) headers['x-amz-security-token'] = req.credentials.sessionToken;
  const names = Object.keys(headers).sort();
  const canonical = [
    'GET',
    req.path,
    '',
    names.map((n) => `${n}:${headers[n].trim().replace(/\s+/g, ' ')}\n`).join(''),
    names.join(';'),
    EMPTY_SHA256,
  ].join('\n');
  const scope = `${date.slice(0, 8)}/${req.region}/s3/aws4_request`;
  const toSign = ['AWS4-HMAC-SHA256', date, scope, createHash('sha256').update(canonical, 'utf8').digest('hex')].join('\n');
  let key = hmac(`AWS4${req.credentials.secretAccessKey}`, date.slice(0, 8));
  for (const part of [req.region, 's3', 'aws4_request']) key = hmac(key, part);
  const signature = createHmac('sha256', key).update(toSign, 'utf8').digest('hex');
  headers.authorization = `AWS4-HMAC-SHA256 Credential=${req.credentials.accessKeyId}/${scope},SignedHeaders=${names.join(';')},Signature=${signature}`;
  return headers;
}

/** A bucket name that is a single DNS label (no dots), as virtual-hosted HTTPS addressing needs. */
export const isPlainBucket = (bucket: string) => /^[a-z0-9][a-z0-9-]{1,61}[a-z0-9]$/.test(bucket);

/** The URL of s3://bucket/key (its `objectPath` as sent and signed). */
export function objectAddress(access: StaticS3Access, bucket: string, key: string): URL & { objectPath: string } {
  if (access.endpoint) {
    const base = new URL(access.endpoint);
    const prefix = base.pathname.replace(/\/+$/, '');
    return Object.assign(base, { objectPath: `${prefix}/${bucket}/${encodeKey(key)}` });
  }
  return Object.assign(new URL(`https://${bucket}.s3.${access.region}.amazonaws.com`), { objectPath: `/${encodeKey(key)}` });
}

/** Idle time after which a request is abandoned (a retryable ETIMEDOUT). */
const IDLE_TIMEOUT_MS = 30_000;
/** How much of an error answer is read for its <Code> and <Message>. */
const MAX_ERROR_BODY = 64 * 1024;

/**
 * GET s3://bucket/key: its bytes and ETag. A 304 (to `ifNoneMatch`), 404 or other error answer
 * throws an S3ResponseError; a body over `maxBytes` an ObjectTooLargeError, before or while it
 * is read. A region redirect from AWS is followed once.
 */
export async function signedGetObject(
  access: StaticS3Access,
  bucket: string,
  key: string,
  extra: { ifNoneMatch?: string; maxBytes?: number } = {},
): Promise<{ body: Buffer; etag?: string }> {
  try {
    return await getOnce(access, bucket, key, extra);
  } catch (e) {
    if (e instanceof S3ResponseError && e.region && !access.endpoint && e.region !== access.region) {
      return getOnce({ ...access, region: e.region }, bucket, key, extra);
    }
    throw e;
  }
}

function getOnce(
  access: StaticS3Access,
  bucket: string,
  key: string,
  extra: { ifNoneMatch?: string; maxBytes?: number },
): Promise<{ body: Buffer; etag?: string }> {
  const url = objectAddress(access, bucket, key);
  const headers = signGet({
    host: url.host,
    path: url.objectPath,
    region: access.region,
    credentials: access.credentials,
    extra: extra.ifNoneMatch ? { 'if-none-match': extra.ifNoneMatch } : {},
  });
  const where = `s3://${bucket}/${key}`;
  const lib = url.protocol === 'https:' ? https : http;
  return new Promise((resolve, reject) => {
    const req = lib.request(
      { protocol: url.protocol, hostname: url.hostname, port: url.port || undefined, path: url.objectPath, method: 'GET', headers },
      (res) => {
        const status = res.statusCode ?? 0;
        const limit = status === 200 ? extra.maxBytes : MAX_ERROR_BODY;
        const declared = Number(res.headers['content-length']);
        if (status === 200 && limit !== undefined && declared > limit) {
          res.destroy();
          reject(new ObjectTooLargeError(`${where} is ${declared} bytes, more than the ${limit} allowed`));
          return;
        }
        const chunks: Buffer[] = [];
        let bytes = 0;
        res.on('data', (c: Buffer) => {
          bytes += c.byteLength;
          if (limit !== undefined && bytes > limit) {
            if (status === 200) {
              res.destroy();
              reject(new ObjectTooLargeError(`${where} is more than the ${limit} bytes allowed`));
            }
            return;
          }
          chunks.push(c);
        });
        res.on('error', reject);
        res.on('end', () => {
          const body = Buffer.concat(chunks);
          if (status === 200) {
            // A connection cut short can end a body without an error: a retryable failure, not a short file.
            if (Number.isFinite(declared) && body.byteLength !== declared) {
              reject(Object.assign(new Error(`GET ${where}: ${body.byteLength} of ${declared} bytes arrived`), { code: 'ECONNRESET' }));
              return;
            }
            const etag = res.headers.etag;
            resolve({ body, ...(etag ? { etag } : {}) });
            return;
          }
          reject(errorOf(status, body.toString('utf8'), where, res.headers['x-amz-bucket-region'] as string | undefined));
        });
      },
    );
    req.setTimeout(IDLE_TIMEOUT_MS, () =>
      req.destroy(Object.assign(new Error(`GET ${where}: no answer for ${IDLE_TIMEOUT_MS} ms`), { code: 'ETIMEDOUT' })),
    );
    req.on('error', reject);
    req.end();
  });
}

const STATUS_CODES: Record<number, string> = { 304: 'NotModified', 403: 'AccessDenied', 404: 'NotFound' };

function errorOf(status: number, xml: string, where: string, region?: string): S3ResponseError {
  const tag = (t: string) => new RegExp(`<${t}>([^<]*)</${t}>`).exec(xml)?.[1];
  const code = tag('Code') ?? STATUS_CODES[status] ?? `Http${status}`;
  const message = tag('Message') ?? `HTTP ${status}`;
  return new S3ResponseError(code, `GET ${where}: ${code}: ${message}`, status, region ?? tag('Region'));
}
