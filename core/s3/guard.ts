import { createHash } from 'node:crypto';
import http from 'node:http';
import { type S3Credentials, UNSIGNED_PAYLOAD, verifySigV4 } from './sigv4-verify.js';

export interface GuardOptions {
  credentials: S3Credentials;
  /** Host header values accepted (e.g. `127.0.0.1:4569`, `localhost:4569`); anything else is refused (DNS rebinding). */
  allowedHosts: () => readonly string[];
  /** Where verified requests go: s3rver on a private unix socket. */
  upstreamSocket: string;
  /** Largest request body accepted (it is held in memory until its sha256 is checked). Default 512 MiB. */
  maxBodyBytes?: number;
}

/** Query parameters whose values become file paths inside s3rver's folder. */
const PATH_QUERY_PARAMS = ['prefix', 'marker', 'start-after', 'key-marker', 'delimiter'];

/** POST is only an S3 API call with one of these sub-resources; a bare POST is a browser form upload. */
const API_POSTS = ['delete', 'uploads', 'uploadId', 'restore', 'select'];

/** True when a key (or prefix) would step outside its bucket folder once s3rver maps it to a path. */
export function isTraversal(value: string): boolean {
  let decoded = value;
  try {
    decoded = decodeURIComponent(value);
  } catch {
    return true;
  }
  if (decoded.includes('\0') || decoded.includes('\\')) return true;
  return decoded.split('/').some((seg) => seg === '..' || seg === '.');
}

/** The policy checks that need no signature: returns the refusal, or undefined when the request may proceed. */
export function refuseBeforeAuth(
  req: Pick<http.IncomingMessage, 'method' | 'url' | 'headers'>,
  allowedHosts: readonly string[],
): { status: number; code: string; message: string } | undefined {
  const host = (req.headers.host ?? '').toLowerCase();
  if (!allowedHosts.includes(host)) return { status: 421, code: 'InvalidHost', message: 'Host header is not this server' };
  // The project's clients are Node processes: they send no Origin. A browser always does on POST/PUT/DELETE and CORS.
  if (req.headers.origin !== undefined) return { status: 403, code: 'AccessDenied', message: 'cross-origin requests are refused' };
  if (req.method === 'OPTIONS') return { status: 403, code: 'AccessDenied', message: 'CORS is not served' };
  const url = new URL(req.url ?? '/', 'http://local');
  // The raw path: URL parsing would resolve the very `..` segments looked for here.
  if (isTraversal((req.url ?? '/').split('?')[0])) {
    return { status: 400, code: 'InvalidKey', message: 'keys may not contain "." or ".." segments' };
  }
  for (const p of PATH_QUERY_PARAMS) {
    const v = url.searchParams.get(p);
    if (v !== null && p !== 'delimiter' && isTraversal(encodeURIComponent(v))) {
      return { status: 400, code: 'InvalidArgument', message: `${p} may not contain "." or ".." segments` };
    }
  }
  const copySource = req.headers['x-amz-copy-source'];
  if (typeof copySource === 'string' && isTraversal(copySource.split('?')[0])) {
    return { status: 400, code: 'InvalidArgument', message: 'x-amz-copy-source may not contain "." or ".." segments' };
  }
  if (req.method === 'POST' && !API_POSTS.some((s) => url.searchParams.has(s))) {
    return { status: 405, code: 'MethodNotAllowed', message: 'form POST uploads are not accepted' };
  }
  return undefined;
}

function sendError(res: http.ServerResponse, status: number, code: string, message: string): void {
  if (res.headersSent) {
    res.destroy();
    return;
  }
  const body = `<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>${code}</Code><Message>${message.replace(/[<>&]/g, '')}</Message></Error>`;
  res.writeHead(status, { 'content-type': 'application/xml', 'content-length': Buffer.byteLength(body), connection: 'close' });
  res.end(body);
}

async function readBody(req: http.IncomingMessage, max: number): Promise<Buffer | 'too large'> {
  const declared = Number(req.headers['content-length'] ?? 0);
  if (declared > max) return 'too large';
  const chunks: Buffer[] = [];
  let n = 0;
  for await (const chunk of req) {
    n += (chunk as Buffer).length;
    if (n > max) return 'too large';
    chunks.push(chunk as Buffer);
  }
  return Buffer.concat(chunks);
}

/**
 * The request handler of the embedded S3's only TCP listener. In order: Host allowlist, no Origin
 * (so no web page can use it), no `.`/`..` key segments, no form POST, then a SigV4 signature made
 * with this run's key pair, then the body against the signed sha256 (held in memory until checked,
 * so s3rver never stores bytes the signer did not send). Only then is the request forwarded, without
 * its Authorization header, to s3rver listening on a private unix socket.
 */
export function createGuardHandler(opts: GuardOptions): http.RequestListener {
  const max = opts.maxBodyBytes ?? 512 * 1024 * 1024;
  return (req, res) => {
    void (async () => {
      const refused = refuseBeforeAuth(req, opts.allowedHosts());
      if (refused) return sendError(res, refused.status, refused.code, refused.message);
      const v = await verifySigV4(req, opts.credentials);
      if (!v.ok) return sendError(res, v.status, v.code, v.message);
      const hasBody = req.headers['content-length'] !== undefined || req.headers['transfer-encoding'] !== undefined;
      let body: Buffer | undefined;
      if (hasBody) {
        const read = await readBody(req, max);
        if (read === 'too large') return sendError(res, 413, 'EntityTooLarge', `request bodies are limited to ${max} bytes here`);
        body = read;
        if (v.payloadHash !== UNSIGNED_PAYLOAD && createHash('sha256').update(body).digest('hex') !== v.payloadHash) {
          return sendError(res, 400, 'XAmzContentSHA256Mismatch', 'the body does not match x-amz-content-sha256');
        }
      } else if (v.payloadHash !== UNSIGNED_PAYLOAD && v.payloadHash !== EMPTY_SHA256) {
        return sendError(res, 400, 'XAmzContentSHA256Mismatch', 'the body does not match x-amz-content-sha256');
      }
      const headers = withoutHopByHop(req.headers);
      delete headers.authorization;
      if (body) headers['content-length'] = String(body.length);
      // One unix-socket connection per request, closed after it: s3rver can end a response short of its
      // Content-Length (a file rewritten while read), which on a kept-alive socket would wait forever;
      // on a closed one it is a premature end, passed on as a dropped connection the client retries.
      headers.connection = 'close';
      const up = http.request({ socketPath: opts.upstreamSocket, method: req.method, path: req.url, headers, agent: false }, (upRes) => {
        res.writeHead(upRes.statusCode ?? 502, withoutHopByHop(upRes.headers));
        upRes.on('aborted', () => res.destroy());
        upRes.on('error', () => res.destroy());
        upRes.on('end', () => {
          if (!upRes.complete) res.destroy();
        });
        upRes.pipe(res);
      });
      up.setTimeout(UPSTREAM_IDLE_MS, () => up.destroy(new Error(`no data from s3rver for ${UPSTREAM_IDLE_MS} ms`)));
      up.on('error', (e) => sendError(res, 502, 'InternalError', `embedded S3 backend: ${e.message}`));
      res.on('close', () => up.destroy());
      up.end(body);
    })().catch((e) => sendError(res, 500, 'InternalError', String((e as Error)?.message ?? e)));
  };
}

/** Headers that belong to one connection, not to the request: never forwarded (the body is already read in full). */
const HOP_BY_HOP = [
  'connection',
  'keep-alive',
  'expect',
  'transfer-encoding',
  'upgrade',
  'te',
  'trailer',
  'proxy-connection',
  'proxy-authorization',
];

function withoutHopByHop(h: http.IncomingHttpHeaders): http.OutgoingHttpHeaders {
  const out: http.OutgoingHttpHeaders = { ...h };
  for (const name of HOP_BY_HOP) delete out[name];
  return out;
}

const UPSTREAM_IDLE_MS = 30_000;

const EMPTY_SHA256 = createHash('sha256').update('').digest('hex');
