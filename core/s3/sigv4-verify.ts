import { createHash, createHmac, timingSafeEqual } from 'node:crypto';
import { SignatureV4 } from '@smithy/signature-v4';

export interface S3Credentials {
  accessKeyId: string;
  secretAccessKey: string;
}

/** What the verifier needs from an incoming request (node's IncomingMessage fits). */
export interface SignedRequestLike {
  method?: string;
  url?: string;
  headers: Record<string, string | string[] | undefined>;
}

export type VerifyResult =
  | { ok: true; payloadHash: string }
  | {
      ok: false;
      status: number;
      code: 'AccessDenied' | 'InvalidAccessKeyId' | 'SignatureDoesNotMatch' | 'RequestTimeTooSkewed' | 'NotImplemented';
      message: string;
    };

/** S3 refuses requests whose signing time is more than 15 minutes off. */
export const MAX_SKEW_MS = 15 * 60 * 1000;

/** Payload hashes a client may declare without us hashing the body (the signature still covers the headers). */
export const UNSIGNED_PAYLOAD = 'UNSIGNED-PAYLOAD';

/** node:crypto as the hash the SDK's signer takes. */
export class NodeSha256 {
  private readonly h;
  constructor(secret?: string | ArrayBuffer | ArrayBufferView) {
    this.h = secret === undefined ? createHash('sha256') : createHmac('sha256', toBuffer(secret));
  }
  update(data: string | ArrayBuffer | ArrayBufferView): void {
    this.h.update(toBuffer(data));
  }
  async digest(): Promise<Uint8Array> {
    return new Uint8Array(this.h.digest());
  }
  reset(): void {
    throw new Error('not supported');
  }
}

function toBuffer(d: string | ArrayBuffer | ArrayBufferView): Buffer {
  if (typeof d === 'string') return Buffer.from(d, 'utf8');
  if (ArrayBuffer.isView(d)) return Buffer.from(d.buffer, d.byteOffset, d.byteLength);
  return Buffer.from(d);
}

const AUTH_RE =
  /^AWS4-HMAC-SHA256 Credential=([^/,\s]+)\/(\d{8})\/([^/,\s]+)\/s3\/aws4_request,\s*SignedHeaders=([a-z0-9;-]+),\s*Signature=([0-9a-f]{64})$/;

function header(req: SignedRequestLike, name: string): string | undefined {
  const v = req.headers[name];
  return Array.isArray(v) ? v.join(',') : v;
}

function deny(code: Exclude<VerifyResult, { ok: true }>['code'], message: string, status = 403): VerifyResult {
  return { ok: false, status, code, message };
}

/** `20261201T101500Z` -> epoch ms, or NaN. */
function parseAmzDate(s: string): number {
  const m = /^(\d{4})(\d{2})(\d{2})T(\d{2})(\d{2})(\d{2})Z$/.exec(s);
  return m ? Date.UTC(+m[1], +m[2] - 1, +m[3], +m[4], +m[5], +m[6]) : Number.NaN;
}

/**
 * Checks an S3 request's SigV4 `Authorization` header against one key pair: recomputes the
 * signature over the method, the path exactly as sent (S3 signs it unnormalised), the query, the
 * signed headers and the declared payload hash, with the same signer the AWS SDK uses, and compares
 * in constant time. Query-string (presigned) and chunked-payload signing are refused: the project's
 * clients never use them. The body itself is checked against the declared hash by the caller.
 */
export async function verifySigV4(req: SignedRequestLike, creds: S3Credentials, now = Date.now()): Promise<VerifyResult> {
  const auth = header(req, 'authorization');
  const url = new URL(req.url ?? '/', 'http://local');
  if (!auth) {
    if (url.searchParams.has('X-Amz-Signature') || url.searchParams.has('Signature')) {
      return deny('NotImplemented', 'presigned URLs are not accepted by the embedded S3', 501);
    }
    return deny(
      'AccessDenied',
      'unsigned request: sign it with the credentials in EDGETUNE_S3_ACCESS_KEY_ID / EDGETUNE_S3_SECRET_ACCESS_KEY',
    );
  }
  const m = AUTH_RE.exec(auth.trim());
  if (!m) return deny('AccessDenied', 'unsupported Authorization header (only AWS4-HMAC-SHA256 for s3)');
  const [, keyId, scopeDate, region, signedHeaderList, signature] = m;
  if (!safeEqual(keyId, creds.accessKeyId)) return deny('InvalidAccessKeyId', 'unknown access key');
  const amzDate = header(req, 'x-amz-date') ?? '';
  const at = parseAmzDate(amzDate);
  if (!Number.isFinite(at) || amzDate.slice(0, 8) !== scopeDate) return deny('AccessDenied', 'missing or inconsistent x-amz-date');
  if (Math.abs(now - at) > MAX_SKEW_MS)
    return deny('RequestTimeTooSkewed', 'the request time is more than 15 minutes from the server time');
  const payloadHash = header(req, 'x-amz-content-sha256') ?? '';
  if (payloadHash !== UNSIGNED_PAYLOAD && !/^[0-9a-f]{64}$/.test(payloadHash)) {
    return deny('NotImplemented', 'x-amz-content-sha256 must be a hex sha256 or UNSIGNED-PAYLOAD', 501);
  }
  const signed = signedHeaderList.split(';');
  if (!signed.includes('host') || !signed.includes('x-amz-date') || !signed.includes('x-amz-content-sha256')) {
    return deny('AccessDenied', 'host, x-amz-date and x-amz-content-sha256 must be signed');
  }
  const headers: Record<string, string> = {};
  for (const name of signed) {
    const v = header(req, name);
    if (v === undefined) return deny('SignatureDoesNotMatch', `signed header ${name} is missing`);
    headers[name] = v;
  }
  const query: Record<string, string | string[]> = {};
  for (const [k, v] of url.searchParams) {
    const prev = query[k];
    query[k] = prev === undefined ? v : Array.isArray(prev) ? [...prev, v] : [prev, v];
  }
  const rawPath = (req.url ?? '/').split('?')[0];
  const signer = new SignatureV4({
    credentials: { accessKeyId: creds.accessKeyId, secretAccessKey: creds.secretAccessKey },
    region,
    service: 's3',
    sha256: NodeSha256,
    uriEscapePath: false,
    applyChecksum: false,
  });
  const out = await signer.sign(
    { method: req.method ?? 'GET', protocol: 'http:', hostname: headers.host, path: rawPath, query, headers },
    { signingDate: new Date(at), signingRegion: region, signingService: 's3' },
  );
  const expected = /Signature=([0-9a-f]{64})/.exec(String(out.headers.authorization ?? ''))?.[1] ?? '';
  if (!safeEqual(expected, signature)) return deny('SignatureDoesNotMatch', 'the request signature does not match');
  return { ok: true, payloadHash };
}

function safeEqual(a: string, b: string): boolean {
  const x = Buffer.from(a);
  const y = Buffer.from(b);
  return x.length === y.length && timingSafeEqual(x, y);
}
